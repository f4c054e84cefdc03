"""Detection: each model's evaluation rows (at most --points) against the out-of-distribution sets made from them
(transforms.py), by AUROC and FPR at 95% TPR of each anomaly score (scores.py).

Which models: every loaded version but the backgrounds of likelihood ratios (a background is trained on perturbed
inputs; it is no detector of its own). A version with a likelihood_ratio reference whose graphs are byte for byte
another version's gives that version's "ratio" column rather than a table of its own.
"""

import dataclasses
import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.anomaly.data import held_out, other_data_set, subset
from bench.anomaly.metrics import auroc, fpr_at_tpr
from bench.anomaly.scores import ScoreCache, flat, reconstruction_error
from bench.anomaly.transforms import Observation, as_images, ood_sets
from bench.anomaly.validity import score_points, scoring
from modelrepo.contract import LIKELIHOOD_RATIO
from modelrepo.files import write_atomic
from service.engine.engine import ModelEngine
from service.engine.repository import ModelRepository
from training.baselines import FittedBaseline, fit_binary_baselines, fit_continuous_baselines
from training.data import Dataset
from training.mnist import binarize

MAX_POINTS = 1000
# Binarised MNIST's baselines on a budget: the mixture of Bernoullis fitted on one binarisation of the first 10,000
# training images, its components chosen on the validation rows among these (the digits use the full grid).
LARGE_TRAIN_ROWS, LARGE_COMPONENTS = 10_000, (16, 32, 64, 128)
LOGLIK, RATIO, RECONSTRUCTION = "-log p(x)", "-ratio", "reconstruction"


@dataclass(frozen=True)
class DetectionTable:
    model: str
    n_normal: int
    note: str
    scorers: list[str]
    rows: list[tuple[str, int, dict[str, tuple[float, float]]]]  # (set, n, scorer -> (AUROC, FPR at 95% TPR))


def graphs_digest(repository: ModelRepository, engine: ModelEngine) -> str:
    folder = Path(repository.root) / engine.name / str(engine.version)
    digest = hashlib.sha256()
    for file in (engine.manifest.encoder, engine.manifest.decoder):
        digest.update((folder / file).read_bytes())
    return digest.hexdigest()


def detection_models(repository: ModelRepository) -> list[tuple[ModelEngine, ModelEngine | None]]:
    """(model, the version whose ratio reference scores its graphs, or None), in name order."""
    engines = [e for name in sorted(repository.loaded) for _, e in sorted(repository.loaded[name].items())]
    backgrounds = {e.reference.background for e in engines if e.reference is not None and e.reference.background}
    is_ratio = lambda e: e.reference is not None and e.reference.score == LIKELIHOOD_RATIO
    by_graphs: dict[str, list[ModelEngine]] = {}
    for engine in engines:
        by_graphs.setdefault(graphs_digest(repository, engine), []).append(engine)
    chosen = []
    for engine in engines:
        if engine.ref in backgrounds:
            continue
        twins = by_graphs[graphs_digest(repository, engine)]
        if is_ratio(engine) and any(not is_ratio(t) for t in twins):
            continue  # its ratio is a column of the twin's table
        ratio = engine if is_ratio(engine) else next((t for t in twins if is_ratio(t)), None)
        chosen.append((engine, ratio))
    return chosen


def fitted_baselines(dataset: Dataset, manifest: dict, folder: Path | None) -> list[FittedBaseline]:
    """The data set's classical baselines, fitted once and kept (pickled) under `folder`."""
    val_fraction = manifest.get("training", {}).get("train_config", {}).get("val_fraction", 0.1)
    path = None if folder is None else Path(folder) / f"{dataset.name}-{manifest['latent_dim']}-{val_fraction}.pkl"
    if path is not None and path.exists():
        return pickle.loads(path.read_bytes())
    if manifest["likelihood"]["type"] == "gaussian":
        fitted = fit_continuous_baselines(dataset, manifest["latent_dim"], val_fraction)
    elif dataset.binarize:  # grey training levels: one fixed binarisation of a subset
        train = binarize(dataset.train[:LARGE_TRAIN_ROWS], np.random.default_rng(2))
        fitted = fit_binary_baselines(dataclasses.replace(dataset, train=train, binarize=False), val_fraction,
                                      LARGE_COMPONENTS)
    else:
        fitted = fit_binary_baselines(dataset, val_fraction)
    if path is not None:
        write_atomic(path, pickle.dumps(fitted))
    return fitted


def detection(repository: ModelRepository, cache: ScoreCache, baselines_folder: Path | None,
              max_points: int = MAX_POINTS, log=print) -> list[DetectionTable]:
    tables = []
    for engine, ratio in detection_models(repository):
        folder = Path(repository.root) / engine.name / str(engine.version)
        manifest = json.loads((folder / "manifest.json").read_text())
        split = held_out(folder)
        normal = subset(split.evaluation, max_points)
        own = scoring(repository, engine, split.calibration, cache, check=False)
        other_name, other = other_data_set(as_images(normal).shape[1])
        sets = ood_sets(normal, Observation.of(split.dataset), other, np.random.default_rng(0))
        scorers = {LOGLIK: lambda x: -score_points(engine, None, x, own.k, own.seed, cache)}
        if ratio is not None:
            made = scoring(repository, ratio, split.calibration, cache, check=False)
            scorers[RATIO] = lambda x, made=made: -made.scores(x, cache)
        if not engine.autoregressive:  # an autoregressive decoder has no E[x | z] to reconstruct with
            scorers[RECONSTRUCTION] = lambda x: reconstruction_error(engine, x, cache)
        for baseline in fitted_baselines(split.dataset, manifest, baselines_folder):
            scorers[f"{baseline.name}, {baseline.chosen}"] = lambda x, b=baseline: -b.log_prob(flat(x))
        normal_scores = {name: score(normal) for name, score in scorers.items()}
        rows = []
        for set_name, points in sets.items():
            figures = {}
            for name, score in scorers.items():
                anomalous = score(points)
                figures[name] = (auroc(normal_scores[name], anomalous), fpr_at_tpr(normal_scores[name], anomalous))
            rows.append((other_name if set_name == "other data set" else set_name, len(points), figures))
            log(f"detection: {engine.ref}, {set_name}: AUROC of -log p(x) {figures[LOGLIK][0]:.3f}")
        ratio_note = f"ratio: {ratio.ref} against {ratio.reference.background}" if ratio is not None else "no ratio"
        tables.append(DetectionTable(engine.ref, len(normal), f"k = {own.k}, seed {own.seed}; {ratio_note}",
                                     list(scorers), rows))
    return tables
