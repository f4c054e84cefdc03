"""Every version of every model in the repository folder, loaded at start-up; failures kept with reasons."""

import hashlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from modelrepo import Manifest, check_graphs, load_manifest, sha256_of
from modelrepo.manifest import NAME_PATTERN
from service.errors import InvalidInput, ModelNotFound, ModelUnavailable
from service.runtime import ModelRuntime

log = logging.getLogger(__name__)
REFERENCE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]{0,63})(?::(?P<version>[1-9][0-9]{0,17}))?$")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    folder: Path
    manifest: Manifest
    runtime: ModelRuntime
    digest: str  # sha256 over the three files: cache keys name the model by it

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def likelihood(self) -> str:
        return self.manifest.likelihood.type

    @property
    def data_size(self) -> int:
        """Values in one data point: prod(data_shape)."""
        return math.prod(self.manifest.data_shape)


@dataclass(frozen=True)
class FailedModel:
    name: str
    version: str
    folder: Path
    error: str


class ModelRepository:
    def __init__(self, root: Path, providers: list[str], threads: int = 0, loglik_graph: str = "fused",
                 precision: str = "fp32"):
        self.root = Path(root)
        self.runtime_options = {"threads": threads, "loglik_graph": loglik_graph, "precision": precision}
        self.loaded: dict[str, dict[int, LoadedModel]] = {}
        self.failed: dict[str, dict[str, FailedModel]] = {}
        for folder in sorted(self.root.glob("*/*")):
            if folder.is_dir() and not folder.name.startswith(".") and not folder.parent.name.startswith("."):
                self._load(folder, providers)

    def _load(self, folder: Path, providers: list[str]) -> None:
        name, version = folder.parent.name, folder.name
        try:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(f"model name {name!r} must match {NAME_PATTERN}")
            if not version.isdigit() or int(version) < 1:
                raise ValueError(f"version folder {version!r} must be a positive integer")
            manifest = load_manifest(folder)
            check_graphs(manifest, folder)
            runtime = ModelRuntime(folder, manifest, providers, **self.runtime_options)
        except Exception as exc:  # noqa: BLE001 - one broken model must not stop the others
            log.warning("model %s/%s not loaded: %s", name, version, exc)
            self.failed.setdefault(name, {})[version] = FailedModel(name, version, folder, str(exc))
            return
        files = ("manifest.json", manifest.encoder, manifest.decoder)
        digest = hashlib.sha256("".join(sha256_of(folder / f) for f in files).encode()).hexdigest()
        self.loaded.setdefault(name, {})[int(version)] = LoadedModel(name, int(version), folder, manifest, runtime, digest)
        log.info("model %s:%s loaded on %s", name, version, runtime.provider)

    def resolve(self, reference: str | None, default: str) -> LoadedModel:
        """"name" (its highest loaded version) or "name:version"; None means the default model."""
        reference = default if reference is None else reference
        match = REFERENCE.match(reference)
        if match is None:
            raise InvalidInput(f"model: {reference!r} is not 'name' or 'name:version' (e.g. 'digits:1')")
        name, version = match["name"], match["version"]
        versions = self.loaded.get(name, {})
        failures = self.failed.get(name, {})
        if version is None:
            if versions:
                return versions[max(versions)]
        elif int(version) in versions:
            return versions[int(version)]
        failure = failures.get(version) if version else next(iter(failures.values()), None)
        if failure is not None:
            raise ModelUnavailable(f"model: {name}:{failure.version} failed to load: {failure.error}")
        known = ", ".join(self.references()) or "none"
        if reference == default and default not in self.names():
            raise ModelNotFound(f"model: none named, and the default model {default!r} (VAE_DEFAULT_MODEL) is not "
                                f"in the repository; name one of: {known}")
        raise ModelNotFound(f"model: no model {reference!r}; loaded models: {known} (GET /models lists them)")

    def references(self) -> list[str]:
        return [f"{n}:{v}" for n in sorted(self.loaded) for v in sorted(self.loaded[n])]

    def names(self) -> list[str]:
        return sorted(set(self.loaded) | set(self.failed))


def describe_model(repository: ModelRepository, name: str) -> dict:
    """What GET /models/{name} shows: every version, loaded or not, with its manifest or its error."""
    loaded, failed = repository.loaded.get(name, {}), repository.failed.get(name, {})
    versions = [
        {"version": v, "ready": True, "provider": m.runtime.provider, "loglik_graph": m.runtime.scoring,
         "digest": m.digest,
         "manifest": m.manifest.model_dump(mode="json")}
        for v, m in sorted(loaded.items())
    ] + [{"version": f.version, "ready": False, "error": f.error} for f in failed.values()]
    return {"name": name, "default_version": max(loaded) if loaded else None,
            "versions": sorted(versions, key=lambda v: str(v["version"]).zfill(12))}
