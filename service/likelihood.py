"""The likelihood math of the data plane, in NumPy over the runtime's outputs.

log p(x) is estimated as the contract defines it: z_1..z_k ~ q(z|x), log-weights
log p(x|z) + log p(z) - log q(z|x), log-mean-exp, delta-method standard error, ELBO. The noise eps (k, L)
is drawn once per request from the seed and shared by every point, so a point's numbers depend on
(x, k, seed) alone: not on the batch it came in, its position, or how the work was sliced.
"""

import math
from collections.abc import Callable

import numpy as np

from modelrepo.importance import ImportanceEstimate, LogMeanExpAccumulator
from service.runtime import ModelRuntime

LOG_2PI = math.log(2.0 * math.pi)


def log_px_given_z(x: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """x (B, 1, D) against decoder outputs each (B, c, D) -> (B, c), in float64."""
    if "logits" in params:
        logits = params["logits"].astype(np.float64)
        return (x * logits - np.logaddexp(0.0, logits)).sum(-1)
    mean, logvar = params["mean"].astype(np.float64), params["logvar"].astype(np.float64)
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * np.exp(-logvar)).sum(-1)


def latent_noise(seed: int | None, count: int, latent_dim: int) -> np.ndarray:
    """(count, L) standard normal draws; a prefix of a longer draw with the same seed."""
    return np.random.default_rng(seed).standard_normal((count, latent_dim))


def no_checkpoint() -> None:
    pass


def importance_sampled_loglik(
    runtime: ModelRuntime, x: np.ndarray, k: int, seed: int, work_elements: int,
    checkpoint: Callable[[], None] = no_checkpoint,
) -> ImportanceEstimate:
    """x (N, *data_shape) float32 -> per-point estimates, with at most ~work_elements values alive at once.

    On the fused graph when the runtime has one (float32 on the device); else the two graphs, float64 here.
    checkpoint() runs before every slice and raises to stop the work (deadline passed, client gone).
    """
    if runtime.scorer is not None:
        return runtime.scorer.estimate(x, latent_noise(seed, k, runtime.latent_dim), work_elements, checkpoint)
    n, data_dim, latent_dim = len(x), math.prod(runtime.data_shape), runtime.latent_dim
    mu, logvar = (a.astype(np.float64) for a in runtime.encode(x))  # (N, L)
    std = np.exp(0.5 * logvar)
    eps = latent_noise(seed, k, latent_dim)  # (k, L)
    # log p(z) - log q(z|x) = -0.5 * sum(z^2) + 0.5 * sum(logvar + eps^2): the constants cancel.
    half_eps_sq = 0.5 * (eps**2).sum(-1)  # (k,)
    half_logvar = 0.5 * logvar.sum(-1)  # (N,)
    per_slice = max(1, work_elements // max(data_dim, latent_dim))  # (point, sample) pairs per decoder call
    chunk = min(k, per_slice)  # slices of K depend on k alone, so a point's sums do not depend on its batch
    block = max(1, min(n, per_slice // chunk))
    flat_x = x.reshape(n, 1, data_dim).astype(np.float64)  # (N, 1, D)
    results = []
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        b = rows.stop - rows.start
        accumulator = LogMeanExpAccumulator(b)
        for s in range(0, k, chunk):
            checkpoint()
            e = eps[s : s + chunk]  # (c, L)
            z = mu[rows, None] + std[rows, None] * e[None]  # (b, c, L)
            c = e.shape[0]
            params = runtime.decode(z.reshape(b * c, latent_dim).astype(np.float32))
            params = {key: value.reshape(b, c, data_dim) for key, value in params.items()}
            log_prior_ratio = -0.5 * (z**2).sum(-1) + half_logvar[rows, None] + half_eps_sq[None, s : s + c]
            accumulator.add(log_px_given_z(flat_x[rows], params) + log_prior_ratio)
        results.append(accumulator.result())
    return ImportanceEstimate.concatenate(results)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-l)) without overflow for large |l|."""
    return np.exp(-np.logaddexp(0.0, -logits.astype(np.float64)))


def sample_observations(params: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Draw x ~ p(x|z) from the decoder's outputs."""
    if "logits" in params:
        probs = sigmoid(params["logits"])
        return (rng.uniform(size=probs.shape) < probs).astype(np.float32)
    mean, logvar = params["mean"], params["logvar"]
    return (mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)).astype(np.float32)


def expected_observation(params: dict[str, np.ndarray]) -> np.ndarray:
    """E[x | z]: sigmoid(logits) or the mean."""
    if "logits" in params:
        return sigmoid(params["logits"]).astype(np.float32)
    return params["mean"]
