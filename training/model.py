"""The VAE: a pure nn.Module built from a ModelConfig. Scripts own data, devices and checkpoints."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.autoregressive import MADEDecoder
from training.config import ModelConfig
from training.likelihoods import (
    bernoulli_log_prob,
    bernoulli_log_prob_table,
    gaussian_log_prob,
    gaussian_log_prob_table,
)
from training.priors import build_prior

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I) or a learned mixture, p(x|z) Bernoulli or Gaussian
    per element; or, with categorical latents, q(z|x) = prod_g Cat(softmax(logits_g)) under a uniform p(z).

    The module works on flat data x (N, D) and flat z (..., L); the exported graphs reshape to and from
    data_shape (and [G, C] for categorical z).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        data_dim, latent = math.prod(config.data_shape), config.latent_dim
        hidden = list(config.hidden)
        encoder_outputs = latent if config.latent == "categorical" else 2 * latent  # logits, or mu and logvar
        self.encoder = mlp([data_dim, *hidden, encoder_outputs], config.activation)
        heads = 2 if config.likelihood == "gaussian" and config.gaussian_variance == "conditional" else 1
        decoder_hidden = list(config.decoder_hidden) or list(reversed(hidden))
        if config.decoder == "made":
            self.decoder = MADEDecoder(data_dim, latent, tuple(decoder_hidden), heads, ACTIVATIONS[config.activation],
                                       config.x_dropout)
        else:
            self.decoder = mlp([latent, *decoder_hidden, heads * data_dim], config.activation)
        if config.likelihood == "gaussian" and config.gaussian_variance == "per_output":
            self.output_logvar = nn.Parameter(torch.zeros(data_dim))
        self.prior = build_prior(config.prior, config.prior_components, latent)

    @property
    def data_dim(self) -> int:
        return math.prod(self.config.data_shape)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, D) -> mu (N, L), logvar (N, L)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The parameters of q(z|x): (mu, logvar), or (logits,) for categorical latents."""
        return (self.encode_logits(x),) if self.config.latent == "categorical" else self.encode(x)

    def encode_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Categorical latents: x (N, D) -> logits (N, G, C)."""
        return self.encoder(x).unflatten(-1, (self.config.groups, self.config.categories))

    @property
    def autoregressive(self) -> bool:
        return self.config.decoder == "made"

    def decode(self, z: torch.Tensor, x: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """z (..., L) -> (logits,) for Bernoulli or (mean, logvar) for Gaussian, each (..., D).

        An autoregressive decoder also takes x (..., D) (teacher forcing): the parameters at position d are
        those of p(x_d | z, x_<d)."""
        if self.autoregressive:
            if x is None:
                raise ValueError("an autoregressive decoder needs x as well as z")
            out = self.decoder(z, x)
        else:
            out = self.decoder(z)
        if self.config.likelihood == "bernoulli":
            return (out,)
        if self.config.gaussian_variance == "per_output":
            mean, raw_logvar = out, self.output_logvar.expand_as(out)
        else:
            mean, raw_logvar = out.chunk(2, dim=-1)
        floor = self.config.min_logvar
        return mean, floor + F.softplus(raw_logvar - floor)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z): x (..., D) broadcast against z (..., L) -> (...)."""
        params = self.decode(z, x)
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_prob(x, *params)
        return gaussian_log_prob(x, *params)

    def log_px_given_z_table(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x_n | z_m) for every pair: x (N, D), z (M, L) -> (N, M); the decoder runs once per z
        (once per pair for an autoregressive decoder, whose parameters depend on x)."""
        if self.autoregressive:
            return self.log_px_given_z(x[:, None], z[None])
        params = self.decode(z)
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_prob_table(x, *params)
        return gaussian_log_prob_table(x, *params)
