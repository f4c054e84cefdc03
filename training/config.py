"""Configuration dataclasses; each saves and loads as JSON so a checkpoint can rebuild its model."""

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Self

from modelrepo.contract import LIKELIHOODS

Likelihood = Literal["bernoulli", "gaussian"]  # modelrepo.contract.LIKELIHOODS, spelled out for type checkers
Objective = Literal["elbo", "iwae"]
Prior = Literal["standard_normal", "mixture_of_gaussians"]
Latent = Literal["gaussian", "categorical"]
Estimator = Literal["exact", "score_function", "gumbel_softmax"]  # gradient of E_q over categorical z


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
    # p(z): N(0, I), or a mixture of `prior_components` learnable Gaussians (Gaussian latents only).
    prior: Prior = "standard_normal"
    prior_components: int = 1
    # q(z|x): diagonal Gaussian, or `groups` independent one-hot vectors of `categories` each under a
    # uniform prior; latent_dim is then groups * categories (set from them).
    latent: Latent = "gaussian"
    groups: int = 0
    categories: int = 0
    # p(x|z): "mlp" factorises over the elements of x; "made" is autoregressive, p(x_d | z, x_<d), a masked
    # MLP over x with z fed into every layer (training/autoregressive.py).
    decoder: Literal["mlp", "made"] = "mlp"
    decoder_hidden: tuple[int, ...] = ()  # decoder widths; empty: the encoder's `hidden` reversed
    # MADE only, training only: each x position fed to the decoder is zeroed with this probability.
    x_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.latent not in ("gaussian", "categorical"):
            raise ValueError(f"latent must be 'gaussian' or 'categorical', got {self.latent!r}")
        if self.prior not in ("standard_normal", "mixture_of_gaussians"):
            raise ValueError(f"prior must be 'standard_normal' or 'mixture_of_gaussians', got {self.prior!r}")
        if self.latent == "categorical":
            if self.groups < 1 or self.categories < 2:
                raise ValueError("categorical latents need groups >= 1 and categories >= 2 "
                                 f"(--groups, --categories), got {self.groups} and {self.categories}")
            if self.prior != "standard_normal":
                raise ValueError("categorical latents have a uniform prior; leave prior at 'standard_normal'")
            object.__setattr__(self, "latent_dim", self.groups * self.categories)
        if self.prior == "mixture_of_gaussians" and self.prior_components < 1:
            raise ValueError(f"prior_components must be >= 1, got {self.prior_components}")
        if not self.data_shape or any(int(d) < 1 for d in self.data_shape):
            raise ValueError(f"data_shape must be positive integers, got {self.data_shape}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.decoder not in ("mlp", "made"):
            raise ValueError(f"decoder must be 'mlp' or 'made', got {self.decoder!r}")
        if not 0.0 <= self.x_dropout < 1.0:
            raise ValueError(f"x_dropout must be in [0, 1), got {self.x_dropout}")
        if self.x_dropout > 0 and self.decoder != "made":
            raise ValueError("x_dropout weakens an autoregressive decoder; use it with decoder 'made'")
        if any(h < 1 for h in (*self.hidden, *self.decoder_hidden)):
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
    # Categorical latents: how the gradient of E_q(z|x)[log p(x|z)] is taken (training/categorical.py).
    estimator: Estimator = "exact"
    baseline_decay: float = 0.99  # score function: moving average of the learning signal
    temperature_start: float = 1.0  # Gumbel-softmax: geometric decay from start to end over the epochs
    temperature_end: float = 0.5
    straight_through: bool = False  # Gumbel-softmax: one-hot forward, relaxed gradient
    # Aggressive inference training (He et al. 2019, training/aggressive.py): before each decoder step, up to
    # aggressive_max_steps encoder-only steps on fresh batches, until the mean loss over aggressive_window
    # steps stops falling; the phase ends when the validation I(x;z) falls between epochs.
    aggressive: bool = False
    aggressive_max_steps: int = 100
    aggressive_window: int = 10
    # A background model (Ren et al. 2019, training/background.py): each input value of every training batch replaced
    # with this probability by a random one (binary data: flipped), fresh each epoch (training.data.perturb).
    perturbation: float = 0.0

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
        if self.estimator not in ("exact", "score_function", "gumbel_softmax"):
            raise ValueError(f"estimator must be 'exact', 'score_function' or 'gumbel_softmax', got {self.estimator!r}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        if self.aggressive_max_steps < 1 or self.aggressive_window < 1:
            raise ValueError("aggressive_max_steps and aggressive_window must be >= 1")
        if self.temperature_start <= 0 or self.temperature_end <= 0:
            raise ValueError("temperature_start and temperature_end must be > 0")
        if not 0.0 <= self.perturbation < 1.0:
            raise ValueError(f"perturbation must be in [0, 1), got {self.perturbation}")

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

    def temperature(self, epoch: int) -> float:
        """Gumbel-softmax temperature at `epoch` (0-based): temperature_start * (end / start) ** (epoch / (epochs - 1))."""
        progress = epoch / max(1, self.epochs - 1)
        return self.temperature_start * (self.temperature_end / self.temperature_start) ** progress


@dataclass(frozen=True)
class DataConfig(_JsonConfig):
    """Where the data comes from: a built-in name ('digits', 'digits-binary') or a file path."""

    source: str
    data_shape: tuple[int, ...] | None = None  # reshape each row of a file to this
    key: str | None = None  # array name inside an .npz
    test_source: str | None = None  # a separate test file; else a 25% split with random_state 0
    # How a point is shown as a picture (the manifest's "image", CONTRACT section 4), for a file's rows:
    # (height, width) or (height, width, channels), values clipped to image_range. The built-in sets know theirs.
    image_shape: tuple[int, ...] | None = None
    image_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.image_shape is not None and (len(self.image_shape) not in (2, 3) or min(self.image_shape) < 1
                                             or (len(self.image_shape) == 3 and self.image_shape[2] not in (1, 3))):
            raise ValueError(f"image_shape must be H,W or H,W,C with C 1 or 3, got {list(self.image_shape)}")
        if len(self.image_range) != 2 or not self.image_range[0] < self.image_range[1]:
            raise ValueError(f"image_range must be LO,HI with LO < HI, got {list(self.image_range)}")
