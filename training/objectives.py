"""Training objectives: the ELBO with beta, KL warm-up and free bits, and the importance-weighted bound."""

import math

import torch

from training.categorical import ENUMERATION_LIMIT, categorical_kl, expected_reconstruction
from training.config import ModelConfig, TrainConfig
from training.estimators import importance_log_weights
from training.likelihoods import gaussian_kl_per_dim, proposal_log_prob
from training.model import VAE


def check_compatible(model: ModelConfig, train: TrainConfig) -> None:
    """Raise ValueError, saying what to change, for a model and an objective that do not go together."""
    if model.prior == "mixture_of_gaussians" and train.free_bits > 0:
        raise ValueError("free_bits needs a KL per dimension, which a mixture prior does not have; set it to 0")
    if train.aggressive and model.latent == "categorical":
        raise ValueError("aggressive training follows I(x;z) of Gaussian latents; set aggressive off for categorical ones")
    if model.latent == "categorical":
        if train.objective != "elbo":
            raise ValueError("categorical latents train with --objective elbo (the estimator is --estimator)")
        if train.estimator == "exact" and model.categories**model.groups > ENUMERATION_LIMIT:
            raise ValueError(f"estimator 'exact' sums over {model.categories}^{model.groups} configurations, more "
                             f"than {ENUMERATION_LIMIT}; use 'score_function' or 'gumbel_softmax', or fewer groups")


def elbo_terms(
    model: VAE, x: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One reparameterised draw: reconstruction log p(x|z) (N,) and KL (N, L) per dimension.

    The KL is analytic against N(0, I); against a mixture prior it is the one-draw Monte Carlo
    log q(z|x) - log p(z) (N, 1), which does not split by dimension.
    """
    mu, logvar = model.encode(x)  # (N, L)
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)  # drawn on the CPU: same run on any device
    z = mu + torch.exp(0.5 * logvar) * eps  # (N, L)
    if model.config.prior == "standard_normal":
        kl = gaussian_kl_per_dim(mu, logvar)
    else:
        kl = (proposal_log_prob(eps, logvar) - model.prior.log_prob(z))[:, None]
    return model.log_px_given_z(x, z), kl


def training_loss(
    model: VAE, x: torch.Tensor, config: TrainConfig, epoch: int, generator: torch.Generator | None = None,
    state: dict | None = None,
) -> torch.Tensor:
    """The quantity to minimise on batch x (N, D) at `epoch`; per data point, averaged over the batch.

    `state` is the objective's own memory across steps (the score function's baseline).
    """
    kl_weight = config.kl_weight(epoch)
    if model.config.latent == "categorical":
        logits = model.encode_logits(x)  # (N, G, C)
        reconstruction = expected_reconstruction(model, x, logits, config, epoch, generator, {} if state is None else state)
        return -(reconstruction.mean() - kl_weight * categorical_kl(logits).sum(-1).mean())
    if config.objective == "iwae":
        log_w = importance_log_weights(model, x, config.iw_samples, generator, kl_weight)  # (N, k)
        return -(torch.logsumexp(log_w, dim=1) - math.log(config.iw_samples)).mean()
    reconstruction, kl = elbo_terms(model, x, generator)
    kl_per_dim = kl.mean(0)  # (L,) batch average, as in Kingma et al. (2016)
    if config.free_bits > 0:
        kl_per_dim = kl_per_dim.clamp_min(config.free_bits)
    return -(reconstruction.mean() - kl_weight * kl_per_dim.sum())
