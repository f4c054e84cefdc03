"""Categorical latents: G independent one-hot groups of C categories under a uniform prior.

Enumeration of all C^G configurations (in slices, so memory stays bounded), the exact log p(x) and ELBO
it gives, and the three estimators of the ELBO's gradient that training chooses from:

    exact           sum over every z of q(z|x) log p(x|z): no noise at all, C^G decoder runs per step
    score_function  log q(z|x) * (log p(x|z) - b) at one z ~ q(z|x), b a moving average (REINFORCE)
    gumbel_softmax  log p(x|y) at y = softmax((logits + Gumbel) / tau), a relaxed z; biased, low variance

The KL to the uniform prior is analytic in every case: KL(q || p) = sum_g sum_c q log q + G log C.
"""

import math

import torch
import torch.nn.functional as F

from training.config import TrainConfig
from training.model import VAE
from training.priors import uniform_categorical_log_prob

ENUMERATION_LIMIT = 4096  # configurations; above this, evaluation importance-samples and "exact" is refused
SLICE = 512  # configurations decoded at once


def configurations(groups: int, categories: int, start: int, stop: int) -> torch.Tensor:
    """Configurations start..stop-1 as category indices (M, G): the digits of m in base C, group 0 first."""
    m = torch.arange(start, stop)[:, None]  # (M, 1)
    place = categories ** torch.arange(groups - 1, -1, -1)  # (G,)
    return torch.div(m, place, rounding_mode="floor") % categories  # (M, G)


def one_hot(indices: torch.Tensor, categories: int, dtype: torch.dtype) -> torch.Tensor:
    """(..., G) integer categories -> flat one-hot z (..., G * C)."""
    return F.one_hot(indices, categories).to(dtype).flatten(-2)


def categorical_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || uniform) per group: logits (N, G, C) -> (N, G)."""
    log_q = torch.log_softmax(logits, dim=-1)
    return (log_q.exp() * log_q).sum(-1) + math.log(logits.shape[-1])


def enumerate_configurations(model: VAE, x: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact sums over every z, in slices: log p(x) = log sum_z p(x|z) p(z) (N,), E_q[log p(x|z)] (N,).

    Differentiable in both the encoder (through q) and the decoder; x (N, D), logits (N, G, C).
    """
    groups, categories = logits.shape[1:]
    total = categories**groups
    log_q = torch.log_softmax(logits, dim=-1)  # (N, G, C)
    log_prior = uniform_categorical_log_prob(groups, categories)
    group_axis = torch.arange(groups)
    log_px_parts, expected_parts = [], []
    for start in range(0, total, SLICE):
        indices = configurations(groups, categories, start, min(total, start + SLICE))  # (M, G)
        z = one_hot(indices, categories, logits.dtype)  # (M, L)
        log_px_z = model.log_px_given_z_table(x, z)  # (N, M)
        q = log_q[:, group_axis, indices].sum(-1).exp()  # (N, M)
        log_px_parts.append(torch.logsumexp(log_px_z, dim=1))  # (N,)
        expected_parts.append((q * log_px_z).sum(1))  # (N,)
    log_px = torch.logsumexp(torch.stack(log_px_parts, 1), dim=1) + log_prior
    return log_px, torch.stack(expected_parts, 1).sum(1)


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None, dtype: torch.dtype,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    u = torch.rand(shape, generator=generator, dtype=dtype).to(device).clamp(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def sample_indices(logits: torch.Tensor, samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """`samples` draws from q(z|x) by Gumbel-max: logits (N, G, C) -> category indices (N, samples, G)."""
    noise = gumbel_noise((logits.shape[0], samples, *logits.shape[1:]), generator, logits.dtype, logits.device)
    return (logits[:, None] + noise).argmax(-1)


def categorical_importance_log_weights(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None, logits: torch.Tensor
) -> torch.Tensor:
    """log p(x, z) - log q(z|x) at k draws z ~ q(z|x): x (N, D), logits (N, G, C) -> (N, k)."""
    groups, categories = logits.shape[1:]
    indices = sample_indices(logits, k, generator)  # (N, k, G)
    log_q = torch.log_softmax(logits, dim=-1)[:, None].expand(-1, k, -1, -1)  # (N, k, G, C)
    log_q_z = log_q.gather(-1, indices[..., None]).squeeze(-1).sum(-1)  # (N, k)
    log_px_z = model.log_px_given_z(x[:, None], one_hot(indices, categories, logits.dtype))  # (N, k)
    return log_px_z + uniform_categorical_log_prob(groups, categories) - log_q_z


def expected_reconstruction(
    model: VAE, x: torch.Tensor, logits: torch.Tensor, config: TrainConfig, epoch: int,
    generator: torch.Generator | None, state: dict,
) -> torch.Tensor:
    """A surrogate (N,) whose gradient estimates that of E_q(z|x)[log p(x|z)] by `config.estimator`.

    `state` carries the score function's moving-average baseline from one step to the next.
    """
    if config.estimator == "exact":
        return enumerate_configurations(model, x, logits)[1]
    categories = logits.shape[-1]
    if config.estimator == "score_function":
        indices = sample_indices(logits, 1, generator)[:, 0]  # (N, G)
        log_q_z = torch.log_softmax(logits, -1).gather(-1, indices[..., None]).squeeze(-1).sum(-1)  # (N,)
        log_px_z = model.log_px_given_z(x, one_hot(indices, categories, logits.dtype))  # (N,)
        signal = log_px_z.detach()
        baseline = _baseline(state)  # from earlier steps only, so it is independent of this z: no bias
        _update_baseline(state, float(signal.mean()), config.baseline_decay)
        # The value is log p(x|z) (the loss reads as the ELBO); the gradient adds (signal - b) grad log q(z|x).
        return log_px_z + (signal - baseline) * (log_q_z - log_q_z.detach())
    tau = config.temperature(epoch)
    relaxed = torch.softmax((logits + gumbel_noise(logits.shape, generator, logits.dtype)) / tau, dim=-1)  # (N, G, C)
    if config.straight_through:
        hard = F.one_hot(relaxed.argmax(-1), categories).to(relaxed.dtype)
        relaxed = hard + relaxed - relaxed.detach()  # one-hot forward, relaxed backward
    return model.log_px_given_z(x, relaxed.flatten(-2))


def _baseline(state: dict) -> float:
    """The bias-corrected moving average (as Adam corrects its moments); 0 before the first step."""
    steps = state.get("baseline_steps", 0)
    return state["baseline"] / (1.0 - state["baseline_decay"] ** steps) if steps else 0.0


def _update_baseline(state: dict, value: float, decay: float) -> None:
    state["baseline"] = decay * state.get("baseline", 0.0) + (1.0 - decay) * value
    state["baseline_steps"] = state.get("baseline_steps", 0) + 1
    state["baseline_decay"] = decay
