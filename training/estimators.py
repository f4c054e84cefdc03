"""log p(x): importance sampling with q(z|x) as proposal, in bounded memory; exact sums for small categorical latents."""

import numpy as np
import torch

from modelrepo.importance import ImportanceEstimate, LogMeanExpAccumulator
from training.categorical import (
    ENUMERATION_LIMIT,
    categorical_importance_log_weights,
    categorical_kl,
    enumerate_configurations,
)
from training.likelihoods import proposal_log_prob
from training.model import VAE


def importance_log_weights(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None, kl_weight: float = 1.0,
    posterior: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """log p(x|z) + w * (log p(z) - log q(z|x)) for k draws z ~ q(z|x): x (N, D) -> (N, k).

    With kl_weight w = 1 these are the importance log-weights log p(x, z) / q(z|x). `posterior` is
    model.posterior(x) when the caller already has it.
    """
    posterior = posterior if posterior is not None else model.posterior(x)
    if model.config.latent == "categorical":
        return categorical_importance_log_weights(model, x, k, generator, *posterior)
    mu, logvar = posterior  # (N, L)
    eps = torch.randn(mu.shape[0], k, mu.shape[1], generator=generator, dtype=mu.dtype).to(mu.device)  # (N, k, L)
    z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps  # (N, k, L)
    log_prior_ratio = model.prior.log_prob(z) - proposal_log_prob(eps, logvar[:, None])  # (N, k)
    return model.log_px_given_z(x[:, None], z) + kl_weight * log_prior_ratio


@torch.no_grad()
def importance_sampled_loglik(
    model: VAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    max_elements: int = 1 << 22,
) -> ImportanceEstimate:
    """log p(x) ~ log-mean-exp of k importance log-weights per point, streamed over sample chunks.

    At most about `max_elements` samples x data values are alive at once: points go in blocks and
    samples in chunks, accumulated with a running max (modelrepo.importance).
    """
    n_points, data_dim = x.shape[0], max(1, x[0].numel())
    per_chunk = max(1, max_elements // data_dim)  # (point, sample) pairs per chunk
    block = max(1, min(n_points, per_chunk // min(k, per_chunk)))
    chunk = max(1, per_chunk // block)
    parts = []
    for start in range(0, n_points, block):
        points = x[start : start + block]
        posterior = model.posterior(points)  # once per block, however many sample chunks follow
        accumulator = LogMeanExpAccumulator(len(points))
        for done in range(0, k, chunk):
            log_w = importance_log_weights(model, points, min(chunk, k - done), generator, posterior=posterior)
            accumulator.add(log_w.double().cpu().numpy())
        parts.append(accumulator.result())
    return ImportanceEstimate(*(np.concatenate(arrays) for arrays in zip(*(vars(p).values() for p in parts))))


def enumerates(model: VAE) -> bool:
    """Whether log p(x) of this model is an exact sum: categorical latents with at most ENUMERATION_LIMIT z."""
    config = model.config
    return config.latent == "categorical" and config.categories**config.groups <= ENUMERATION_LIMIT


@torch.no_grad()
def exact_loglik(model: VAE, x: torch.Tensor, block: int = 64) -> ImportanceEstimate:
    """Categorical latents: log p(x) = log sum_z p(x, z) and the ELBO, summed over every z; stderr 0."""
    logliks, elbos = [], []
    for start in range(0, len(x), block):
        points = x[start : start + block]
        logits = model.encode_logits(points)  # (n, G, C)
        loglik, expected_log_px = enumerate_configurations(model, points, logits)
        logliks.append(loglik.double().cpu().numpy())
        elbos.append((expected_log_px - categorical_kl(logits).sum(-1)).double().cpu().numpy())
    loglik = np.concatenate(logliks)
    return ImportanceEstimate(loglik=loglik, stderr=np.zeros_like(loglik), elbo=np.concatenate(elbos))
