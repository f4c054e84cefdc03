"""Aggressive inference-network training (He et al. 2019, "Lagging inference networks and posterior collapse").

While aggressive, before each decoder update the encoder alone is updated on fresh mini-batches until its
loss stops falling; the phase ends once the mutual information I(x;z) on held-out rows stops rising from one
epoch to the next. Afterwards training is the ordinary joint update.
"""

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


def update_encoder_until_converged(step: Callable[[], float], max_steps: int, window: int) -> int:
    """Call `step` (one encoder update on a fresh batch; returns its loss) until the mean loss over the last
    `window` calls is not below the mean over the `window` before it, or `max_steps` calls; returns the count.

    He et al.'s inner loop: up to 100 steps, the loss compared every 15 (here `window`).
    """
    previous, total = math.inf, 0.0
    for done in range(1, max_steps + 1):
        total += step()
        if done % window == 0:
            current = total / window
            if current >= previous:
                return done
            previous, total = current, 0.0
    return max_steps


def stays_aggressive(previous_mi: float, current_mi: float) -> bool:
    """He et al.'s rule: leave the aggressive phase when the held-out I(x;z) falls between epochs."""
    return current_mi >= previous_mi


def drop_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Forget these parameters' gradients, so the optimiser's next step leaves them alone (Adam skips
    parameters whose .grad is None: their moments do not move either)."""
    for parameter in parameters:
        parameter.grad = None


def encoder_and_rest(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The encoder's parameters, and every other one (decoder, learned prior, output variances)."""
    encoder = list(model.encoder.parameters())
    ids = {id(p) for p in encoder}
    return encoder, [p for p in model.parameters() if id(p) not in ids]


def random_batch(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    return x[torch.randint(len(x), (size,), generator=generator).to(x.device)]
