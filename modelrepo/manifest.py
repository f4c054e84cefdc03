"""manifest.json of a model version, validated exactly as the contract states it."""

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    PositiveInt,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from modelrepo.contract import (
    CATEGORICAL_LATENT,
    CATEGORICAL_PRIOR,
    DECODER_FILE,
    ENCODER_FILE,
    ENCODER_LOGITS,
    ENCODER_OUTPUTS,
    FORMAT,
    GAUSSIAN_LATENT,
    LIKELIHOODS,
    MANIFEST_FILE,
    MIXTURE_OF_GAUSSIANS,
    NAME_PATTERN,
    PRIORS_OF_LATENT,
    REFERENCE_FILE,
    STANDARD_NORMAL,
    UNIFORM_CATEGORICAL,
)

SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or does not keep the contract."""


class IntegrityError(ManifestError):
    """A file whose bytes do not have the sha256 its manifest records."""


class Likelihood(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal[LIKELIHOODS]
    autoregressive: StrictBool = Field(False, description="Optional: true when decoder.onnx takes x as well as z and "
                                       "its output at flat position d depends on x only through positions before d.")


class GaussianLatent(BaseModel):
    """z in R^latent_dim; the encoder gives mu and logvar."""

    model_config = ConfigDict(extra="allow")
    type: Literal[GAUSSIAN_LATENT] = GAUSSIAN_LATENT


class CategoricalLatent(BaseModel):
    """z is `groups` independent one-hot vectors of `categories`; the encoder gives logits [groups, categories]."""

    model_config = ConfigDict(extra="allow")
    type: Literal[CATEGORICAL_LATENT]
    groups: PositiveInt
    categories: PositiveInt

    @property
    def configurations(self) -> int:
        """C^G: the number of values z can take."""
        return self.categories**self.groups


Latent = Annotated[GaussianLatent | CategoricalLatent, Field(discriminator="type")]


class Image(BaseModel):
    """How a point is shown as an image (CONTRACT section 4): height x width pixels of `channels` (1 or 3), values
    clipped to `range`. A point's values are the image's in C order of (channels, height, width)."""

    model_config = ConfigDict(extra="allow")
    height: PositiveInt
    width: PositiveInt
    channels: Literal[1, 3] = 1
    range: tuple[FiniteFloat, FiniteFloat] = (0.0, 1.0)

    @model_validator(mode="after")
    def _range_is_an_interval(self) -> "Image":
        if not self.range[0] < self.range[1]:
            raise ValueError(f"image.range: [{self.range[0]:g}, {self.range[1]:g}] must be [lo, hi] with lo < hi")
        return self


class _PriorKeys(BaseModel):
    model_config = ConfigDict(extra="allow")

    def check_shapes(self, manifest: "Manifest") -> None:
        """Raise ValueError, naming the key and the fix, when a parameter's shape disagrees with the latents."""


class StandardNormalPrior(_PriorKeys):
    """p(z) = N(0, I)."""

    type: Literal[STANDARD_NORMAL]


class MixtureOfGaussiansPrior(_PriorKeys):
    """p(z) = sum_c softmax(logits)_c N(z; mean_c, diag exp(logvar_c)), C components over latent_dim."""

    type: Literal[MIXTURE_OF_GAUSSIANS]
    logits: list[FiniteFloat] = Field(min_length=1)
    mean: list[list[FiniteFloat]]
    logvar: list[list[FiniteFloat]]

    def check_shapes(self, manifest: "Manifest") -> None:
        components, dim = len(self.logits), manifest.latent_dim
        for key in ("mean", "logvar"):
            _check_table(f"prior.{key}", getattr(self, key), components, dim,
                         f"one row per component (C={components}, the length of prior.logits) of latent_dim={dim} "
                         "numbers")


class UniformCategoricalPrior(_PriorKeys):
    """p(z) uniform over the C^G one-hot configurations."""

    type: Literal[UNIFORM_CATEGORICAL]


class CategoricalPrior(_PriorKeys):
    """p(z) = prod_g Cat(z_g; softmax(logits_g))."""

    type: Literal[CATEGORICAL_PRIOR]
    logits: list[list[FiniteFloat]]

    def check_shapes(self, manifest: "Manifest") -> None:
        groups, categories = manifest.latent_shape
        _check_table("prior.logits", self.logits, groups, categories,
                     f"one row per group (latent.groups={groups}) of latent.categories={categories} numbers")


Prior = Annotated[StandardNormalPrior | MixtureOfGaussiansPrior | UniformCategoricalPrior | CategoricalPrior,
                  Field(discriminator="type")]
_DEFAULT_PRIORS = {GAUSSIAN_LATENT: StandardNormalPrior, CATEGORICAL_LATENT: UniformCategoricalPrior}


def _check_table(key: str, rows: list[list[float]], count: int, width: int, meaning: str) -> None:
    """rows must be [count][width]."""
    lengths = sorted({len(row) for row in rows})
    if len(rows) != count or lengths != [width]:
        found = f"[{len(rows)}][{lengths[0]}]" if len(lengths) == 1 else f"{len(rows)} rows of lengths {lengths}"
        raise ValueError(f"{key}: is {found}, expected [{count}][{width}]: {meaning}")


class Manifest(BaseModel):
    """The required keys of manifest.json; any further keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    format: Literal[FORMAT]
    name: str = Field(pattern=NAME_PATTERN)
    version: PositiveInt
    data_shape: list[PositiveInt] = Field(min_length=1)
    latent_dim: PositiveInt
    likelihood: Likelihood
    latent: Latent = Field(default_factory=GaussianLatent)
    prior: Prior = Field(None, description="Optional: standard_normal for Gaussian latents, uniform_categorical "
                         "for categorical ones.")  # filled in by _latent_and_prior_agree
    encoder: str
    decoder: str
    sha256: dict[str, str] | None = Field(None, description="Optional: file name -> sha256 (64 hex digits).")
    image: Image | None = Field(None, description="Optional: how to show a point as an image; implied for data_shape "
                                "[H, W], [1, H, W] and [3, H, W].")

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

    @property
    def reference(self) -> str:
        """How requests, answers and logs name this version: "name:version" (modelrepo.contract.REFERENCE_PATTERN)."""
        return f"{self.name}:{self.version}"

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """One latent point as the graphs take it: (latent_dim,), or (groups, categories) for categorical latents."""
        if isinstance(self.latent, CategoricalLatent):
            return self.latent.groups, self.latent.categories
        return (self.latent_dim,)

    @property
    def image_layout(self) -> Image | None:
        """The image a point is shown as: the manifest's `image`, or the one its data_shape implies; None if neither."""
        if self.image is not None:
            return self.image
        shape = self.data_shape
        if len(shape) == 2:
            return Image(height=shape[0], width=shape[1])
        if len(shape) == 3 and shape[0] in (1, 3):
            return Image(height=shape[1], width=shape[2], channels=shape[0])
        return None

    @model_validator(mode="after")
    def _image_holds_a_point(self) -> "Manifest":
        image = self.image
        if image is not None and image.height * image.width * image.channels != math.prod(self.data_shape):
            raise ValueError(f"image: {image.height} x {image.width} x {image.channels} channel(s) is "
                             f"{image.height * image.width * image.channels} values, but a point has "
                             f"prod(data_shape) = {math.prod(self.data_shape)}; make height x width x channels equal it")
        return self

    @model_validator(mode="after")
    def _latent_and_prior_agree(self) -> "Manifest":
        latent, allowed = self.latent, PRIORS_OF_LATENT[self.latent.type]
        if isinstance(latent, CategoricalLatent) and self.latent_dim != latent.groups * latent.categories:
            raise ValueError(f"latent_dim: is {self.latent_dim}, but a categorical latent of {latent.groups} groups "
                             f"x {latent.categories} categories has {latent.groups * latent.categories} values; set "
                             "latent_dim to groups x categories")
        if self.prior is None:
            self.prior = _DEFAULT_PRIORS[latent.type](type=allowed[0])
        elif self.prior.type not in allowed:
            raise ValueError(f"prior: type {self.prior.type!r} does not go with a {latent.type} latent, which takes "
                             f"{' or '.join(repr(a) for a in allowed)} (a missing prior means {allowed[0]!r})")
        self.prior.check_shapes(self)
        return self

    @field_validator("encoder", "decoder")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        # A manifest names files beside itself; a path could reach outside the model folder.
        if not value or Path(value).name != value or value in {".", ".."}:
            raise ValueError(f"must be a file name in the model folder, got {value!r}")
        return value


def encoder_outputs(manifest: Manifest) -> tuple[str, ...]:
    """The encoder's outputs: ("mu", "logvar"), or ("logits",) for categorical latents."""
    return (ENCODER_LOGITS,) if isinstance(manifest.latent, CategoricalLatent) else ENCODER_OUTPUTS


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """Validate the bytes of a manifest.json; `where` names it in every error message."""
    try:
        content = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where}: not readable JSON ({exc})") from None
    try:
        return Manifest.model_validate(content)
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors()]
        more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise ManifestError(f"{where}: {'; '.join(problems[:MAX_PROBLEMS])}{more}") from None


MAX_PROBLEMS = 5
TAGGED_KEYS = ("prior", "latent")  # unions told apart by "type": pydantic puts the type in the error's location


def _problem(error: dict) -> str:
    """One validation error as `key.path: message`; a check of several keys names them in its own message."""
    location = list(error["loc"])
    if not location:
        return error["msg"].removeprefix("Value error, ")
    if location[0] in TAGGED_KEYS and len(location) > 1:
        del location[1]
    return f"{'.'.join(str(part) for part in location)}: {error['msg']}"


def check_location(manifest: Manifest, folder_name: str, folder_version: str, where: str) -> None:
    """A manifest must name the <name>/<version> folder it lives in."""
    if manifest.name != folder_name or str(manifest.version) != folder_version:
        raise ManifestError(
            f"{where}: says {manifest.reference} but lives in {folder_name}/{folder_version}"
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
    digest: str  # sha256 over the sha256 of manifest.json, encoder, decoder and reference.json (if any), as read
    reference: bytes | None = None  # reference.json as read; None when the version has none
    reference_unreadable: str | None = None  # why reference.json exists but could not be read


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
    reference, unreadable = _read_optional(folder / REFERENCE_FILE)
    hashed = (raw, *graphs.values()) + ((reference,) if reference is not None else ())  # no reference: as before
    digest = hashlib.sha256("".join(hashlib.sha256(b).hexdigest() for b in hashed).encode())
    return VersionFiles(manifest, graphs["encoder"], graphs["decoder"], digest.hexdigest(), reference, unreadable)


def _read_optional(path: Path) -> tuple[bytes | None, str | None]:
    """(the file's bytes, None), (None, None) when there is none, or (None, why it cannot be read)."""
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or type(exc).__name__})"


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
