"""The priors p(z) of Gaussian latents: N(0, I), or a mixture of C learnable diagonal Gaussians."""

import math

import torch
from torch import nn

from modelrepo.contract import MIXTURE_OF_GAUSSIANS, STANDARD_NORMAL
from training.likelihoods import LOG_2PI, standard_normal_log_prob


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I); no parameters."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., L) -> (...)."""
        return standard_normal_log_prob(z)

    def manifest(self) -> dict:
        return {"type": STANDARD_NORMAL}


class MixtureOfGaussiansPrior(nn.Module):
    """p(z) = sum_c softmax(logits)_c N(z; mean_c, diag(exp(logvar_c))), trained with the VAE.

    Means start spread as N(0, I) draws and variances at 1, so the mixture starts near N(0, 2I) and
    each component has a region of its own from the first step.
    """

    def __init__(self, components: int, latent_dim: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))  # (C,)
        self.mean = nn.Parameter(torch.randn(components, latent_dim))  # (C, L)
        self.logvar = nn.Parameter(torch.zeros(components, latent_dim))  # (C, L)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., L) -> log p(z) (...), by log-sum-exp over the components."""
        diff = z[..., None, :] - self.mean  # (..., C, L)
        per_component = -0.5 * (LOG_2PI + self.logvar + diff.square() * torch.exp(-self.logvar)).sum(-1)  # (..., C)
        return torch.logsumexp(torch.log_softmax(self.logits, dim=0) + per_component, dim=-1)

    def manifest(self) -> dict:
        """The contract's `prior` entry: float lists of the trained parameters."""
        return {
            "type": MIXTURE_OF_GAUSSIANS,
            "logits": self.logits.detach().double().tolist(),
            "mean": self.mean.detach().double().tolist(),
            "logvar": self.logvar.detach().double().tolist(),
        }


def build_prior(kind: str, components: int, latent_dim: int) -> nn.Module:
    if kind == MIXTURE_OF_GAUSSIANS:
        return MixtureOfGaussiansPrior(components, latent_dim)
    return StandardNormalPrior()


def uniform_categorical_log_prob(groups: int, categories: int) -> float:
    """log p(z) of any one-hot configuration under the uniform prior: -G log C."""
    return -groups * math.log(categories)
