"""Configuration dataclasses; each saves and loads as JSON so a checkpoint can rebuild its model."""

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Self

from modelrepo.contract import LIKELIHOODS

Likelihood = Literal["bernoulli", "gaussian"]  # modelrepo.contract.LIKELIHOODS, spelled out for type checkers
Objective = Literal["elbo", "iwae"]


class _JsonConfig:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)


@dataclass(frozen=True)
class ModelConfig(_JsonConfig):
    """Architecture: MLP encoder and decoder around a latent of `latent_dim` dimensions."""

    data_shape: tuple[int, ...]
    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    activation: Literal["relu", "elu", "silu"] = "relu"
    likelihood: Likelihood = "gaussian"
    # Gaussian decoder: "conditional" predicts a log-variance per output from z; "per_output" learns one
    # free log-variance per output, shared by all z.
    gaussian_variance: Literal["conditional", "per_output"] = "conditional"
    # Smooth lower bound on the Gaussian decoder's log-variance, so a constant feature cannot collapse it.
    min_logvar: float = -9.0

    def __post_init__(self) -> None:
        if not self.data_shape or any(int(d) < 1 for d in self.data_shape):
            raise ValueError(f"data_shape must be positive integers, got {self.data_shape}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be {' or '.join(map(repr, LIKELIHOODS))}, got {self.likelihood!r}")


@dataclass(frozen=True)
class TrainConfig(_JsonConfig):
    """Optimisation and objective. The validation split is carved out of the training data."""

    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 at the last epoch
    weight_decay: float = 0.0
    seed: int = 0
    objective: Objective = "elbo"
    beta: float = 1.0
    warmup_epochs: int = 0  # KL weight rises linearly from 0 to beta over these epochs
    free_bits: float = 0.0  # nats per latent dimension below which the KL is not penalised
    iw_samples: int = 1  # k of the importance-weighted bound (objective "iwae")
    val_fraction: float = 0.1
    eval_every: int = 5  # epochs between validation scores
    eval_samples: int = 100  # importance samples per validation point
    patience: int = 0  # stop after this many validation scores without improvement; 0 = never

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1 or self.eval_samples < 1:
            raise ValueError("epochs, batch_size, eval_every and eval_samples must be >= 1")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {self.objective!r}")
        if self.iw_samples < 1:
            raise ValueError(f"iw_samples must be >= 1, got {self.iw_samples}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.beta < 0 or self.free_bits < 0 or self.warmup_epochs < 0:
            raise ValueError("beta, free_bits and warmup_epochs must be >= 0")
        if self.objective == "iwae" and self.free_bits > 0:
            raise ValueError("free_bits applies to the 'elbo' objective only; set it to 0 for 'iwae'")

    def learning_rate_at(self, epoch: int) -> float:
        """Learning rate for `epoch` (0-based); a function of the epoch alone, so resuming needs no state."""
        if self.lr_schedule == "constant":
            return self.learning_rate
        return 0.5 * self.learning_rate * (1.0 + math.cos(math.pi * epoch / self.epochs))

    def kl_weight(self, epoch: int) -> float:
        """Beta at `epoch` (0-based) under the linear warm-up."""
        if self.warmup_epochs == 0:
            return self.beta
        return self.beta * min(1.0, (epoch + 1) / self.warmup_epochs)


@dataclass(frozen=True)
class DataConfig(_JsonConfig):
    """Where the data comes from: a built-in name ('digits', 'digits-binary') or a file path."""

    source: str
    data_shape: tuple[int, ...] | None = None  # reshape each row of a file to this
    key: str | None = None  # array name inside an .npz
    test_source: str | None = None  # a separate test file; else a 25% split with random_state 0
