"""Checkpoints carry the configs that rebuild the model, so evaluation and export never guess."""

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modelrepo.files import write_atomic
from training.config import DataConfig, ModelConfig, TrainConfig
from training.model import VAE

FORMAT = "vae-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not ours."""


@dataclass
class Checkpoint:
    model_config: ModelConfig
    train_config: TrainConfig
    data_config: DataConfig
    epochs_done: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    best_state: dict[str, torch.Tensor]
    best_score: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    objective_state: dict[str, float] = field(default_factory=dict)  # e.g. the score function's baseline
    finished: bool = False

    def best_model(self) -> VAE:
        model = VAE(self.model_config)
        model.load_state_dict(self.best_state)
        return model.eval()


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, renamed into place."""
    payload = dict(vars(checkpoint), format=FORMAT)
    for name in ("model_config", "train_config", "data_config"):
        payload[name] = payload[name].to_dict()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path) -> Checkpoint:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.pop("format", None) != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint")
    payload["model_config"] = ModelConfig.from_dict(payload["model_config"])
    payload["train_config"] = TrainConfig.from_dict(payload["train_config"])
    payload["data_config"] = DataConfig.from_dict(payload["data_config"])
    return Checkpoint(**payload)
