"""Log-densities used everywhere in training and evaluation; each is defined once, here.

All take flat data: x (..., D). Sums run over the last axis, so leading axes broadcast.
"""

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bern(x; sigmoid(logits)) summed over D; x may be fractional in [0, 1]."""
    x = x.expand_as(logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(logvar)) summed over D."""
    return -0.5 * (LOG_2PI + logvar + (x - mean).square() * torch.exp(-logvar)).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the latent axis."""
    return -0.5 * (LOG_2PI + z.square()).sum(-1)


def proposal_log_prob(eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z|x) at z = mu + exp(logvar / 2) * eps, written in eps for accuracy."""
    return -0.5 * (LOG_2PI + logvar + eps.square()).sum(-1)


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension, (N, L) -> (N, L)."""
    return 0.5 * (mu.square() + torch.exp(logvar) - 1.0 - logvar)
