"""Importance sampling of log p(x) with q(z|x) as proposal, in bounded memory."""

import math
from dataclasses import dataclass

import torch

from training.likelihoods import proposal_log_prob, standard_normal_log_prob
from training.model import VAE


def importance_log_weights(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None, kl_weight: float = 1.0
) -> torch.Tensor:
    """log p(x|z) + w * (log p(z) - log q(z|x)) for k draws z ~ q(z|x): x (N, D) -> (N, k).

    With kl_weight w = 1 these are the importance log-weights log p(x, z) / q(z|x).
    """
    mu, logvar = model.encode(x)  # (N, L)
    eps = torch.randn(mu.shape[0], k, mu.shape[1], generator=generator, dtype=mu.dtype)  # (N, k, L)
    z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps  # (N, k, L)
    log_prior_ratio = standard_normal_log_prob(z) - proposal_log_prob(eps, logvar[:, None])  # (N, k)
    return model.log_px_given_z(x[:, None], z) + kl_weight * log_prior_ratio


@dataclass
class ImportanceEstimate:
    loglik: torch.Tensor  # (N,) float64, log (1/k) sum_i w_i
    stderr: torch.Tensor  # (N,) float64, sd(w) / (sqrt(k) mean(w))
    elbo: torch.Tensor  # (N,) float64, mean of the k log-weights


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
    samples in chunks, with a running max and rescaled sums for the log-mean-exp.
    """
    n_points, data_dim = x.shape[0], max(1, x[0].numel())
    per_point = max(1, max_elements // data_dim)  # samples x points per chunk
    block = max(1, min(n_points, per_point // min(k, per_point)))
    chunk = max(1, per_point // block)
    results = [_stream_block(model, x[i : i + block], k, chunk, generator) for i in range(0, n_points, block)]
    return ImportanceEstimate(*(torch.cat(parts) for parts in zip(*results)))


def _stream_block(
    model: VAE, x: torch.Tensor, k: int, chunk: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = x.shape[0]
    running_max = torch.full((n,), -math.inf, dtype=torch.float64)
    sum_w = torch.zeros(n, dtype=torch.float64)  # sum exp(lw - running_max)
    sum_w2 = torch.zeros(n, dtype=torch.float64)  # sum exp(2 (lw - running_max))
    sum_lw = torch.zeros(n, dtype=torch.float64)
    done = 0
    while done < k:
        size = min(chunk, k - done)
        log_w = importance_log_weights(model, x, size, generator).double()  # (n, size)
        new_max = torch.maximum(running_max, log_w.max(dim=1).values)
        scale = torch.exp(running_max - new_max)  # 0 on the first chunk
        shifted = log_w - new_max[:, None]
        sum_w = sum_w * scale + torch.exp(shifted).sum(1)
        sum_w2 = sum_w2 * scale.square() + torch.exp(2 * shifted).sum(1)
        sum_lw += log_w.sum(1)
        running_max, done = new_max, done + size
    mean_w = sum_w / k  # in units of exp(running_max)
    var_w = (sum_w2 / k - mean_w.square()).clamp_min(0.0)
    loglik = running_max + torch.log(mean_w)
    stderr = torch.sqrt(var_w) / (math.sqrt(k) * mean_w)
    return loglik, stderr, sum_lw / k
