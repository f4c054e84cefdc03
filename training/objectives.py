"""Training objectives: the ELBO with beta, KL warm-up and free bits, and the importance-weighted bound."""

import math

import torch

from training.config import TrainConfig
from training.estimators import importance_log_weights
from training.likelihoods import gaussian_kl_per_dim
from training.model import VAE


def elbo_terms(
    model: VAE, x: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One reparameterised draw: reconstruction log p(x|z) (N,) and analytic KL per dimension (N, L)."""
    mu, logvar = model.encode(x)  # (N, L)
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps  # (N, L)
    return model.log_px_given_z(x, z), gaussian_kl_per_dim(mu, logvar)


def training_loss(
    model: VAE, x: torch.Tensor, config: TrainConfig, epoch: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The quantity to minimise on batch x (N, D) at `epoch`; per data point, averaged over the batch."""
    kl_weight = config.kl_weight(epoch)
    if config.objective == "iwae":
        log_w = importance_log_weights(model, x, config.iw_samples, generator, kl_weight)  # (N, k)
        return -(torch.logsumexp(log_w, dim=1) - math.log(config.iw_samples)).mean()
    reconstruction, kl = elbo_terms(model, x, generator)
    kl_per_dim = kl.mean(0)  # (L,) batch average, as in Kingma et al. (2016)
    if config.free_bits > 0:
        kl_per_dim = kl_per_dim.clamp_min(config.free_bits)
    return -(reconstruction.mean() - kl_weight * kl_per_dim.sum())
