"""manifest.json of a model version, validated exactly as the contract states it."""

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

FORMAT = "vae-onnx/1"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or does not keep the contract."""


class Likelihood(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["bernoulli", "gaussian"]


class Prior(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["standard_normal"]


class Manifest(BaseModel):
    """The required keys of manifest.json; any further keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    format: Literal["vae-onnx/1"]
    name: str = Field(pattern=NAME_PATTERN)
    version: PositiveInt
    data_shape: list[PositiveInt] = Field(min_length=1)
    latent_dim: PositiveInt
    likelihood: Likelihood
    prior: Prior
    encoder: str
    decoder: str

    @field_validator("encoder", "decoder")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        # A manifest names files beside itself; a path could reach outside the model folder.
        if not value or Path(value).name != value or value in {".", ".."}:
            raise ValueError(f"must be a file name in the model folder, got {value!r}")
        return value


def load_manifest(version_dir: Path) -> Manifest:
    """Read and validate `<version_dir>/manifest.json`, checking it against the folder it lives in."""
    path = Path(version_dir) / "manifest.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not readable JSON ({exc})") from None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ManifestError(f"{path}: {problems}") from None
    folder_name, folder_version = Path(version_dir).resolve().parent.name, Path(version_dir).name
    if manifest.name != folder_name or str(manifest.version) != folder_version:
        raise ManifestError(
            f"{path}: says {manifest.name}:{manifest.version} but lives in {folder_name}/{folder_version}"
        )
    for role in ("encoder", "decoder"):
        if not (Path(version_dir) / getattr(manifest, role)).is_file():
            raise ManifestError(f"{path}: {role} file {getattr(manifest, role)!r} is missing")
    return manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
