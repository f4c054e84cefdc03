"""Test-set evaluation: log-likelihood (importance-sampled with K = 5000, or exact for small categorical
latents), ELBO, KL per dimension, active units, mutual information I(x;z) (Gaussian latents)."""

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from modelrepo.contract import EXACT, IMPORTANCE
from modelrepo.importance import ImportanceEstimate
from training.categorical import categorical_kl
from training.estimators import enumerates, exact_loglik, importance_sampled_loglik
from training.information import mutual_information
from training.likelihoods import gaussian_kl_per_dim, proposal_log_prob
from training.model import VAE

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z_d]) above this
KL_SAMPLES = 100  # Monte Carlo draws per point for the KL to a mixture prior


@torch.no_grad()
def evaluate(
    model: VAE, x: np.ndarray, k: int = 5000, seed: int = 0, block: int = 32, progress: bool = True,
    device: str = "cpu",
) -> dict:
    """Metrics on x (N, *data_shape), in nats per data point unless named otherwise; computed on `device`
    with noise drawn on the CPU, so the figures do not depend on it beyond rounding."""
    model = model.to(device).eval()
    flat = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)).to(device)
    generator = torch.Generator().manual_seed(seed)
    if enumerates(model):
        estimate, method = exact_loglik(model, flat), EXACT
    else:
        parts = [importance_sampled_loglik(model, flat[start : start + block], k, generator)
                 for start in tqdm(range(0, len(flat), block), desc=f"log p(x), K={k}", unit="block",
                                   disable=not progress or None)]
        estimate, method = ImportanceEstimate.concatenate(parts), IMPORTANCE
    kl_per_dim, posterior_mean = kl_and_posterior_mean(model, flat, generator)
    posterior_mean_variance = posterior_mean.double().cpu().var(0, unbiased=True)  # (L,) Cov_x(E_q[z_d])
    n, data_dim = flat.shape
    loglik, stderr = estimate.loglik, estimate.stderr
    information = {}
    if model.config.latent == "gaussian":  # over the test rows, q(z) their aggregate posterior
        information["mutual_information"] = mutual_information(*model.encode(flat), generator=generator)
    return {
        "k": k if method == IMPORTANCE else model.config.categories**model.config.groups,  # terms summed
        "method": method,
        "n_test": n,
        "test_loglik": float(loglik.mean()),
        # Standard error of the mean estimate from the importance sampling alone, per point combined.
        "test_loglik_is_stderr": float(np.sqrt(np.square(stderr).sum()) / n),
        "test_loglik_max_point_stderr": float(stderr.max()),
        "test_elbo": float(estimate.elbo.mean()),
        "test_kl": float(kl_per_dim.sum()),
        "bits_per_dim": float(-loglik.mean() / (data_dim * math.log(2))),
        "kl_per_dim": [float(v) for v in kl_per_dim.cpu()],
        "active_units": int((posterior_mean_variance > ACTIVE_UNIT_THRESHOLD).sum()),
        "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
        **information,
    }


def kl_and_posterior_mean(model: VAE, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(q || p) averaged over x, per latent unit (L,) (one entry for a mixture prior, one per group for
    categorical latents), and E_q[z] per point (N, L) (for categorical latents, q's probabilities)."""
    config = model.config
    if config.latent == "categorical":
        logits = model.encode_logits(x)  # (N, G, C)
        return categorical_kl(logits).double().mean(0), torch.softmax(logits, -1).flatten(1)
    mu, logvar = model.encode(x)  # (N, L)
    if config.prior == "standard_normal":
        return gaussian_kl_per_dim(mu, logvar).double().mean(0), mu
    eps = torch.randn(KL_SAMPLES, *mu.shape, generator=generator).to(mu.device)  # (S, N, L)
    z = mu + torch.exp(0.5 * logvar) * eps  # (S, N, L)
    monte_carlo = proposal_log_prob(eps, logvar) - model.prior.log_prob(z)  # (S, N)
    return monte_carlo.double().mean().reshape(1), mu
