"""The model repository as served: one immutable snapshot of every version in the folder, loaded (its
ModelEngine, engine.engine) or failed with its reason. A reload builds the next snapshot beside the current one;
the data plane swaps it in with one assignment, so a request keeps the engine it resolved until it finishes.

Every message names files relative to the repository (`digits/1/manifest.json: missing`), never by an
absolute path: they end up in /health/ready, GET /models and 503 details.
"""

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from modelrepo import ManifestError, VersionFiles, check_graph_bytes, read_version
from modelrepo.contract import LIKELIHOOD_RATIO, NAME_PATTERN, REFERENCE_FILE, REFERENCE_PATTERN
from modelrepo.reference import Reference
from service.engine.engine import ModelEngine
from service.engine.options import EngineOptions
from service.errors import (
    InvalidInput,
    ModelNotFound,
    ModelUnavailable,
    RepositoryUnreadable,
    ScoringUnavailable,
)

HOW_TO_REFERENCE = ("make one with `python -m service reference NAME:VERSION --data FILE` from held-out points "
                    "(CONTRACT.md, section 3)")

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (name, version folder), as found on disk
Signature = tuple[tuple[str, int, int, int], ...]  # (file name, size, mtime_ns, inode) of each file in a version


@dataclass(frozen=True)
class FailedModel:
    name: str
    version: str
    error: str


@dataclass
class ReloadReport:
    """What one reload did, each version named `name/version` as its folder is."""

    added: list[str] = field(default_factory=list)  # now serving, did not before
    changed: list[str] = field(default_factory=list)  # serving new files in place of the old ones
    removed: list[str] = field(default_factory=list)  # folder gone: no longer served or listed
    failed: dict[str, str] = field(default_factory=dict)  # tried and failed; an older load keeps serving if any
    unchanged: list[str] = field(default_factory=list)

    @property
    def anything_changed(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.failed)


class ModelRepository:
    """One snapshot: never modified after it is built; `reloaded` returns the next one."""

    def __init__(self, root: Path, options: EngineOptions, loaded: dict[Key, ModelEngine] | None = None,
                 failed: dict[Key, FailedModel] | None = None, reload_errors: dict[Key, str] | None = None,
                 signatures: dict[Key, Signature] | None = None):
        self.root, self.options = Path(root), options
        self.signatures = signatures or {}  # as last read, whether that load succeeded or not
        self.loaded: dict[str, dict[int, ModelEngine]] = {}
        for model in (loaded or {}).values():
            self.loaded.setdefault(model.name, {})[model.version] = model
        self.failed: dict[str, dict[str, FailedModel]] = {}
        for failure in (failed or {}).values():
            self.failed.setdefault(failure.name, {})[failure.version] = failure
        self._resolved: dict[tuple[str | None, str], ModelEngine] = {}  # (reference, default) -> engine
        # name -> version -> why the latest files of a serving version did not load (the older load serves)
        self.reload_errors: dict[str, dict[int, str]] = {}
        for (name, version), error in (reload_errors or {}).items():
            self.reload_errors.setdefault(name, {})[int(version)] = error

    @classmethod
    def load(cls, root: Path, options: EngineOptions) -> "ModelRepository":
        """Every version in the folder; one that fails is kept with its reason while the others serve."""
        return cls(root, options).reloaded()[0]

    def reloaded(self) -> tuple["ModelRepository", ReloadReport]:
        """The next snapshot: versions whose files changed since they were last read are loaded (in the calling
        thread, beside the ones serving now); the rest are carried over. Raises RepositoryUnreadable."""
        found = scan_versions(self.root)
        report = ReloadReport()
        loaded: dict[Key, ModelEngine] = {}
        failed: dict[Key, FailedModel] = {}
        reload_errors: dict[Key, str] = {}
        for key, signature in found.items():
            name, version = key
            label = f"{name}/{version}"
            serving = self._loaded_at(key)
            if self.signatures.get(key) == signature:  # not touched since it was last read: carry it over
                if serving is not None:
                    loaded[key] = serving
                    if int(version) in self.reload_errors.get(name, {}):
                        reload_errors[key] = self.reload_errors[name][int(version)]
                else:
                    failed[key] = self.failed[name][version]
                report.unchanged.append(label)
                continue
            try:
                model = self._load_version(name, version, serving)
            except Exception as exc:  # noqa: BLE001 - one broken model must not stop the others
                error = self._relative(exc)
                log.warning("model %s not loaded: %s", label, error)
                report.failed[label] = error
                if serving is not None:
                    loaded[key], reload_errors[key] = serving, error
                else:
                    failed[key] = FailedModel(name, version, error)
                continue
            loaded[key] = model
            if model is serving:
                report.unchanged.append(label)  # touched, same bytes
            else:
                (report.changed if serving is not None else report.added).append(label)
        report.removed = [f"{n}/{v}" for n, v in self.signatures if (n, v) not in found]
        return ModelRepository(self.root, self.options, loaded, failed, reload_errors, found), report

    def _loaded_at(self, key: Key) -> ModelEngine | None:
        name, version = key
        return self.loaded.get(name, {}).get(int(version)) if version.isdigit() else None

    def _load_version(self, name: str, version: str, serving: ModelEngine | None) -> ModelEngine:
        """Read the version's files once; check, hash and load those bytes. The serving model if they are its."""
        label = f"{name}/{version}"
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(f"{label}: model name {name!r} must match {NAME_PATTERN}")
        if not version.isdigit() or int(version) < 1:
            raise ValueError(f"{label}: version folder {version!r} must be a positive integer")
        files: VersionFiles = read_version(self.root / name / version, label)
        if serving is not None and files.digest == serving.digest:
            return serving
        try:
            check_graph_bytes(files.manifest, files.encoder, files.decoder)
            engine = ModelEngine(files, self.options)
        except ManifestError:
            raise
        except Exception as exc:
            raise ValueError(f"{label}: {exc}") from None
        served = engine.describe()
        log.info("model %s loaded on %s (%s)", engine.ref, served["provider"], served["loglik_graph"])
        return engine

    def _relative(self, exc: Exception) -> str:
        """The error's text with the repository's absolute path taken out, whatever library wrote it."""
        text = str(exc) or type(exc).__name__
        for root in sorted({str(self.root.absolute()), str(self.root.resolve()), str(self.root)}, key=len,
                           reverse=True):
            text = text.replace(root + os.sep, "").replace(root, "<repository>")
        return text

    def resolve(self, reference: str | None, default: str) -> ModelEngine:
        """"name" (its highest loaded version) or "name:version"; None means the default model. Each reference
        that resolved is remembered (the snapshot never changes; there is one per name and one per version)."""
        engine = self._resolved.get((reference, default))
        if engine is None:
            engine = self._resolved[(reference, default)] = self._resolve(reference, default)
        return engine

    def _resolve(self, reference: str | None, default: str) -> ModelEngine:
        reference = default if reference is None else reference
        if re.fullmatch(REFERENCE_PATTERN, reference) is None:
            raise InvalidInput(f"model: {reference!r} is not 'name' or 'name:version' (e.g. 'digits:1')")
        name, _, version = reference.partition(":")  # version "" when the reference names none
        versions = self.loaded.get(name, {})
        failures = self.failed.get(name, {})
        if not version:
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

    def scoring(self, engine: ModelEngine) -> tuple[Reference, ModelEngine | None]:
        """The reference /score uses for this version and, for a likelihood ratio, the background's engine in
        this snapshot. Raises ScoringUnavailable with the reason when it has none that can be used."""
        problem = self.scoring_problem(engine)
        if problem is not None:
            raise ScoringUnavailable(f"model {engine.ref}: /score is off: {problem}")
        reference = engine.reference
        if reference.score != LIKELIHOOD_RATIO:
            return reference, None
        name, _, version = reference.background.partition(":")
        return reference, self.loaded[name][int(version)]

    def scoring_problem(self, engine: ModelEngine) -> str | None:
        """Why this version cannot answer /score in this snapshot, or None."""
        where = f"{engine.name}/{engine.version}/{REFERENCE_FILE}"
        if engine.reference is None:
            return engine.reference_problem or f"{where}: missing; {HOW_TO_REFERENCE}"
        background = engine.reference.background
        if engine.reference.score != LIKELIHOOD_RATIO:
            return None
        name, _, version = background.partition(":")
        found = self.loaded.get(name, {}).get(int(version))
        if found is None:
            return (f"{where}: background: model {background} is not served (loaded models: "
                    f"{', '.join(self.references()) or 'none'}); add it to the repository or fix the reference")
        if found.data_shape != engine.data_shape:
            return (f"{where}: background: model {background} has data_shape {list(found.data_shape)}, this model "
                    f"{list(engine.data_shape)}; a likelihood ratio needs a background over the same data")
        return None

    def references(self) -> list[str]:
        return [self.loaded[n][v].ref for n in sorted(self.loaded) for v in sorted(self.loaded[n])]

    def names(self) -> list[str]:
        return sorted(set(self.loaded) | set(self.failed))

    def describe(self, name: str) -> dict:
        """What GET /models/{name} shows: every version, loaded or not, with its manifest or its error."""
        loaded, failed = self.loaded.get(name, {}), self.failed.get(name, {})
        reload_errors = self.reload_errors.get(name, {})
        versions = [
            _served(v, engine.describe(), reload_errors.get(v), self.scoring_problem(engine))
            for v, engine in sorted(loaded.items())
        ] + [{"version": f.version, "ready": False, "error": f.error} for f in failed.values()]
        return {"name": name, "default_version": max(loaded) if loaded else None,
                "versions": sorted(versions, key=lambda v: str(v["version"]).zfill(12))}


def scan_versions(root: Path) -> dict[Key, Signature]:
    """Every <name>/<version> folder (hidden ones skipped: staging and temporary names) and the stat of its
    files; a changed signature is what sends a version to be read again."""
    if not root.is_dir():
        raise RepositoryUnreadable("the model repository (VAE_MODEL_REPOSITORY) is no longer a readable folder; "
                                   "nothing was reloaded and the models loaded before keep serving")
    found = {}
    for folder in sorted(root.glob("*/*")):
        if folder.is_dir() and not folder.name.startswith(".") and not folder.parent.name.startswith("."):
            found[(folder.parent.name, folder.name)] = _signature(folder)
    return found


def _signature(folder: Path) -> Signature:
    entries = []
    try:
        listing = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return ()
    for entry in listing:
        if entry.name.startswith("."):
            continue  # write_atomic's temporary files: their rename into place changes the real file's entry
        try:
            if entry.is_file():
                stat = entry.stat()
                entries.append((entry.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
        except OSError:
            continue  # gone between the listing and the stat: the next scan sees the folder as it is then
    return tuple(entries)


def _served(version: int, report: dict, reload_error: str | None, scoring_problem: str | None) -> dict:
    """A loaded version in GET /models: its engine's report with whether /score serves (and why not), the reload
    error (if any) before the manifest."""
    manifest = report.pop("manifest")
    report["scoring"] = {"ready": scoring_problem is None, **({"error": scoring_problem} if scoring_problem else {})}
    return {"version": version, "ready": True, **report, **({"reload_error": reload_error} if reload_error else {}),
            "manifest": manifest}
