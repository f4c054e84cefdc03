"""MADE (Germain et al. 2015): an autoregressive decoder p(x|z) = prod_d p(x_d | z, x_<d) in one masked pass.

Natural ordering over the flat (C-order) positions of x. Inputs have degree d = 1..D, hidden units a degree
m in 1..D-1, and a unit sees x only through units of lower or equal degree; the output for position d sees
hidden units of degree < d (strictly), so it depends on x_<d alone. The latent z enters every layer
unmasked. A masked direct connection x -> output (strictly lower triangular) adds the linear part.

Decoder weakening (Bowman et al. 2016): in training mode each input position of x is replaced by 0 with
probability `x_dropout`; in eval mode (evaluation, export, serving) the decoder sees the full x.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in) on every pass."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def hidden_degrees(width: int, data_dim: int) -> torch.Tensor:
    """Degrees 1..D-1 spread evenly over a layer's units (deterministic, so no seed decides the masks)."""
    return torch.arange(width) % max(1, data_dim - 1) + 1  # (H,)


def made_masks(data_dim: int, hidden: tuple[int, ...], heads: int) -> list[torch.Tensor]:
    """Masks (out, in) for input -> hidden..., last hidden -> output, and the direct input -> output layer.

    Output unit d (of each head) connects to hidden units of degree < d + 1, i.e. to x_<d only.
    """
    inputs = torch.arange(1, data_dim + 1)  # (D,) degrees of x
    degrees = [inputs] + [hidden_degrees(width, data_dim) for width in hidden]
    masks = [(later[:, None] >= earlier[None, :]) for earlier, later in zip(degrees[:-1], degrees[1:])]
    outputs = inputs.repeat(heads)  # (heads * D,)
    masks.append(outputs[:, None] > degrees[-1][None, :])
    masks.append(outputs[:, None] > inputs[None, :])  # direct connection, strictly lower triangular
    return [m.float() for m in masks]


class MADEDecoder(nn.Module):
    """(z (..., L), x (..., D)) -> (..., heads * D) output parameters; leading axes broadcast."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: tuple[int, ...], heads: int, activation: type,
                 x_dropout: float = 0.0):
        super().__init__()
        if not hidden:
            raise ValueError("a MADE decoder needs at least one hidden layer (--decoder-hidden)")
        if not 0.0 <= x_dropout < 1.0:
            raise ValueError(f"x_dropout must be in [0, 1), got {x_dropout}")
        masks = made_masks(data_dim, hidden, heads)
        self.masked = nn.ModuleList(MaskedLinear(m) for m in masks[:-1])
        self.direct = MaskedLinear(masks[-1])
        self.from_z = nn.ModuleList(nn.Linear(latent_dim, m.shape[0]) for m in masks[:-1])
        self.activation = activation()
        self.x_dropout = x_dropout

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.x_dropout > 0:
            x = x * (torch.rand_like(x) >= self.x_dropout)  # each position zeroed with probability p
        h = x
        for i, (masked, from_z) in enumerate(zip(self.masked, self.from_z)):
            h = masked(h) + from_z(z)  # (..., H): x-part (..., H) broadcast against z-part (..., H)
            if i < len(self.masked) - 1:
                h = self.activation(h)
        return h + self.direct(x)


def with_masks_baked(module: nn.Module) -> nn.Module:
    """A copy of `module` in which every MaskedLinear is a plain nn.Linear holding weight * mask, so an
    exported graph carries the masked weights themselves (no mask multiplication at run time)."""
    baked = copy.deepcopy(module)
    for parent in list(baked.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, MaskedLinear):
                plain = nn.Linear(child.in_features, child.out_features, dtype=child.weight.dtype)
                with torch.no_grad():
                    plain.weight.copy_(child.weight * child.mask)
                    plain.bias.copy_(child.bias)
                setattr(parent, name, plain)
    return baked
