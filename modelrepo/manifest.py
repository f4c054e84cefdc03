"""manifest.json of a model version, validated exactly as the contract states it."""

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from modelrepo.contract import DECODER_FILE, ENCODER_FILE, FORMAT, LIKELIHOODS, MANIFEST_FILE, NAME_PATTERN, PRIORS

SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or does not keep the contract."""


class IntegrityError(ManifestError):
    """A file whose bytes do not have the sha256 its manifest records."""


class Likelihood(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal[LIKELIHOODS]


class Prior(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal[PRIORS]


class Manifest(BaseModel):
    """The required keys of manifest.json; any further keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    format: Literal[FORMAT]
    name: str = Field(pattern=NAME_PATTERN)
    version: PositiveInt
    data_shape: list[PositiveInt] = Field(min_length=1)
    latent_dim: PositiveInt
    likelihood: Likelihood
    prior: Prior
    encoder: str
    decoder: str
    sha256: dict[str, str] | None = Field(None, description="Optional: file name -> sha256 (64 hex digits).")

    @field_validator("sha256", mode="before")
    @classmethod
    def _file_digests(cls, value):
        if value is None:
            return value
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and SHA256_HEX.fullmatch(v) for k, v in value.items()
        ):
            raise ValueError(f'must map file names to their sha256 as 64 hex digits, e.g. {{"{ENCODER_FILE}": '
                             f'"5df9...", "{DECODER_FILE}": "f4f0..."}}, got {json.dumps(value)[:200]}')
        return {name: digest.lower() for name, digest in value.items()}

    @model_validator(mode="after")
    def _digests_name_model_files(self) -> "Manifest":
        unknown = sorted(set(self.sha256 or {}) - {self.encoder, self.decoder})
        if unknown:
            raise ValueError(f"sha256 names {unknown}, which are not this model's graph files "
                             f"({self.encoder!r}, {self.decoder!r})")
        return self

    @field_validator("encoder", "decoder")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        # A manifest names files beside itself; a path could reach outside the model folder.
        if not value or Path(value).name != value or value in {".", ".."}:
            raise ValueError(f"must be a file name in the model folder, got {value!r}")
        return value


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """Validate the bytes of a manifest.json; `where` names it in every error message."""
    try:
        content = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where}: not readable JSON ({exc})") from None
    try:
        return Manifest.model_validate(content)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ManifestError(f"{where}: {problems}") from None


def check_location(manifest: Manifest, folder_name: str, folder_version: str, where: str) -> None:
    """A manifest must name the <name>/<version> folder it lives in."""
    if manifest.name != folder_name or str(manifest.version) != folder_version:
        raise ManifestError(
            f"{where}: says {manifest.name}:{manifest.version} but lives in {folder_name}/{folder_version}"
        )


def load_manifest(version_dir: Path) -> Manifest:
    """Read and validate `<version_dir>/manifest.json`, checking it against the folder it lives in."""
    path = Path(version_dir) / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing") from None
    except OSError as exc:
        raise ManifestError(f"{path}: not readable JSON ({exc})") from None
    manifest = parse_manifest(raw, str(path))
    check_location(manifest, Path(version_dir).resolve().parent.name, Path(version_dir).name, str(path))
    for role in ("encoder", "decoder"):
        if not (Path(version_dir) / getattr(manifest, role)).is_file():
            raise ManifestError(f"{path}: {role} file {getattr(manifest, role)!r} is missing")
    return manifest


def verify_sha256(manifest: Manifest, contents: dict[str, bytes], where: str) -> None:
    """Each sha256 the manifest records (none for hand-built models that omit them) against the bytes read."""
    for file_name, expected in (manifest.sha256 or {}).items():
        actual = hashlib.sha256(contents[file_name]).hexdigest()
        if actual != expected:
            raise IntegrityError(f"{where}/{file_name}: sha256 is {actual[:16]}..., manifest.json records "
                                 f"{expected[:16]}...; the file changed after the manifest was written (a copy "
                                 "still in progress, or the wrong file): copy the version again or fix the manifest")


@dataclass(frozen=True)
class VersionFiles:
    """A version folder's three files, each read once: what is verified, hashed and loaded are these bytes."""

    manifest: Manifest
    encoder: bytes
    decoder: bytes
    digest: str  # sha256 over the sha256 of manifest.json, encoder and decoder, as read


def read_version(version_dir: Path, where: str) -> VersionFiles:
    """Read `<where>` = <name>/<version> (the folder `version_dir`) once, validate and verify it.

    Errors name files as `<where>/<file>`, so a caller passing a path relative to the repository leaks no
    absolute path. Raises ManifestError (IntegrityError for a sha256 mismatch).
    """
    folder = Path(version_dir)
    manifest_where = f"{where}/{MANIFEST_FILE}"
    raw = _read(folder / MANIFEST_FILE, manifest_where, "missing")
    manifest = parse_manifest(raw, manifest_where)
    check_location(manifest, folder.parent.name, folder.name, manifest_where)
    graphs = {role: _read(folder / getattr(manifest, role), manifest_where,
                          f"{role} file {getattr(manifest, role)!r} is missing") for role in ("encoder", "decoder")}
    verify_sha256(manifest, {manifest.encoder: graphs["encoder"], manifest.decoder: graphs["decoder"]}, where)
    digest = hashlib.sha256("".join(hashlib.sha256(b).hexdigest() for b in (raw, *graphs.values())).encode())
    return VersionFiles(manifest, graphs["encoder"], graphs["decoder"], digest.hexdigest())


def _read(path: Path, where: str, when_missing: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{where}: {when_missing}") from None
    except OSError as exc:  # exc's own text names the absolute path; strerror does not
        raise ManifestError(f"{where}: {path.name} cannot be read ({exc.strerror or type(exc).__name__})") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
