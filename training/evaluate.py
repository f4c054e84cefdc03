"""Test-set evaluation: importance-sampled log-likelihood (K = 5000), ELBO, KL per dimension, active units."""

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from training.estimators import importance_sampled_loglik
from training.likelihoods import gaussian_kl_per_dim
from training.model import VAE

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): Cov_x(E_q[z_d]) above this


@torch.no_grad()
def evaluate(
    model: VAE, x: np.ndarray, k: int = 5000, seed: int = 0, block: int = 32, progress: bool = True
) -> dict:
    """Metrics on x (N, *data_shape), in nats per data point unless named otherwise."""
    model.eval()
    flat = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1))
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for start in tqdm(range(0, len(flat), block), desc=f"log p(x), K={k}", unit="block",
                      disable=not progress or None):
        parts.append(importance_sampled_loglik(model, flat[start : start + block], k, generator))
    loglik = np.concatenate([p.loglik for p in parts])
    stderr = np.concatenate([p.stderr for p in parts])
    elbo = np.concatenate([p.elbo for p in parts])
    mu, logvar = model.encode(flat)  # (N, L)
    kl_per_dim = gaussian_kl_per_dim(mu, logvar).double().mean(0)  # (L,)
    posterior_mean_variance = mu.double().var(0, unbiased=True)  # (L,) Cov_x(E_q[z_d])
    n, data_dim = flat.shape
    return {
        "k": k,
        "n_test": n,
        "test_loglik": float(loglik.mean()),
        # Standard error of the mean estimate from the importance sampling alone, per point combined.
        "test_loglik_is_stderr": float(np.sqrt(np.square(stderr).sum()) / n),
        "test_loglik_max_point_stderr": float(stderr.max()),
        "test_elbo": float(elbo.mean()),
        "test_kl": float(kl_per_dim.sum()),
        "bits_per_dim": float(-loglik.mean() / (data_dim * math.log(2))),
        "kl_per_dim": [float(v) for v in kl_per_dim],
        "active_units": int((posterior_mean_variance > ACTIVE_UNIT_THRESHOLD).sum()),
        "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
    }
