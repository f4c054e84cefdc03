"""Log-densities used everywhere in training and evaluation, in torch; each is defined once, here (their
constants are modelrepo's, which the service's NumPy math shares).

All take flat data: x (..., D). Sums run over the last axis, so leading axes broadcast.
"""

import torch
import torch.nn.functional as F

from modelrepo.likelihood import LOG_2PI


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bern(x; sigmoid(logits)) summed over D; x may be fractional in [0, 1]."""
    x, logits = torch.broadcast_tensors(x, logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(logvar)) summed over D."""
    return -0.5 * (LOG_2PI + logvar + (x - mean).square() * torch.exp(-logvar)).sum(-1)


def bernoulli_log_prob_table(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bern(x_n; sigmoid(logits_m)) for every pair: x (N, D), logits (M, D) -> (N, M), by one matmul."""
    return x @ logits.T - F.softplus(logits).sum(-1)


def gaussian_log_prob_table(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x_n; mean_m, exp(logvar_m)) for every pair: x (N, D), mean and logvar (M, D) -> (N, M).

    The square (x - mean)^2 / var expands into x^2 / var - 2 x mean / var + mean^2 / var: three matmuls
    in place of an (N, M, D) array.
    """
    precision = torch.exp(-logvar)  # (M, D)
    quadratic = x.square() @ precision.T - 2 * x @ (mean * precision).T + (mean.square() * precision).sum(-1)
    return -0.5 * ((LOG_2PI + logvar).sum(-1) + quadratic)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the latent axis."""
    return -0.5 * (LOG_2PI + z.square()).sum(-1)


def proposal_log_prob(eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z|x) at z = mu + exp(logvar / 2) * eps, written in eps for accuracy."""
    return -0.5 * (LOG_2PI + logvar + eps.square()).sum(-1)


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension, (N, L) -> (N, L)."""
    return 0.5 * (mu.square() + torch.exp(logvar) - 1.0 - logvar)
