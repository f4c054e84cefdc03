"""The one-class protocol of Ruff et al. (2018, Deep SVDD, Table 1) with the project's VAE: for each MNIST digit, a
VAE trained on that digit's training images only, then every MNIST test image scored, that digit normal and the
nine others anomalous; AUROC of -log p(x) and of the reconstruction error.

Per class, under <runs>/class-<c>/: checkpoint.pt (training's own, resumed where it stopped), the exported version
in <runs>/repository/mnist-class-<c>/1, scores.npz, and result.json last (atomically): a class whose result.json
exists is skipped, so the runner resumes after a kill and a finished class is never trained again.
"""

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.anomaly.data import LabelledMnist
from bench.anomaly.metrics import auroc, fpr_at_tpr
from bench.anomaly.scores import ScoreCache, loglik, reconstruction_error
from modelrepo.files import write_atomic
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import Dataset

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class OneClassConfig:
    """mnist-binary's recipe (training/presets.py) for one digit: its MLP 784-500-500 (ELU), Bernoulli decoder and
    importance-weighted bound (k = 5), Adam 1e-3 with cosine decay, batch 100; a standard normal prior over 16
    latents instead of a 10-component mixture over 50 (one digit, about 5,000 images), and fewer epochs."""

    model: ModelConfig = ModelConfig(data_shape=(28, 28), latent_dim=16, hidden=(500, 500), activation="elu",
                                     likelihood="bernoulli")
    train: TrainConfig = TrainConfig(epochs=50, batch_size=100, learning_rate=1e-3, lr_schedule="cosine",
                                     objective="iwae", iw_samples=5, warmup_epochs=10, eval_every=10)
    k: int = 100  # importance samples per test point
    seed: int = 0

    def with_epochs(self, epochs: int) -> "OneClassConfig":
        warmup = min(self.train.warmup_epochs, max(epochs // 5, 0))
        train = dataclasses.replace(self.train, epochs=epochs, warmup_epochs=warmup,
                                    eval_every=min(self.train.eval_every, epochs))
        return dataclasses.replace(self, train=train)

    def describe(self) -> dict:
        """The config as result.json holds it (JSON types: lists, not tuples), to compare a result against."""
        return json.loads(json.dumps({"model": self.model.to_dict(), "train": self.train.to_dict(), "k": self.k,
                                      "seed": self.seed}))


def class_dataset(data: LabelledMnist, digit: int) -> Dataset:
    """The digit's training grey levels (binarised afresh each epoch) and its validation rows; the test rows are
    all of MNIST's, which neither training nor selection sees."""
    return Dataset(f"mnist-binary-class-{digit}", data.train_grey[data.train_labels == digit], data.test,
                   binarize=True, validation=data.validation[data.validation_labels == digit])


def run_class(digit: int, folder: Path, data: LabelledMnist, config: OneClassConfig, progress: bool = True) -> dict:
    """Train (or resume), export, score the test set; the class's result, not yet written."""
    from service.engine.engine import ModelEngine
    from service.engine.options import EngineOptions
    from training.checkpoint import load_checkpoint
    from training.export import export_model
    from training.train import train

    here = Path(folder) / f"class-{digit}"
    here.mkdir(parents=True, exist_ok=True)
    checkpoint_path = here / "checkpoint.pt"
    dataset = class_dataset(data, digit)
    model = dataclasses.replace(config.model, data_shape=dataset.data_shape)
    data_config = DataConfig(f"mnist-binary, digit {digit} only")
    if checkpoint_path.exists():
        previous = load_checkpoint(checkpoint_path)
        if (previous.model_config, previous.train_config, previous.data_config) != (model, config.train, data_config):
            checkpoint_path.unlink()  # another config's run: start this one afresh
    started = time.perf_counter()
    state = train(dataset, data_config, model, config.train, checkpoint_path,
                  resume=checkpoint_path.exists(), progress=progress)
    trained = time.perf_counter()
    name = f"mnist-class-{digit}"
    version = Path(folder) / "repository" / name / "1"
    export_model(state.best_model(), Path(folder) / "repository", name, 1,  # the best epoch on validation
                 {"description": f"One-class VAE: MNIST digit {digit} only (bench/anomaly/oneclass.py)",
                  "training": {"train_config": config.train.to_dict(), "best_epoch": state.best_epoch,
                               "best_val_loglik": state.best_score}}, force=True)
    engine = ModelEngine.open(version, EngineOptions(providers=["CPUExecutionProvider"], threads=1))
    cache = ScoreCache(here / "scores")
    test_loglik = loglik(engine, data.test, config.k, config.seed, cache)
    test_reconstruction = reconstruction_error(engine, data.test, cache)
    scored = time.perf_counter()
    normal = data.test_labels == digit
    figures = {}
    for score_name, anomaly in (("loglik", -test_loglik), ("reconstruction", test_reconstruction)):
        figures[score_name] = {"auroc": auroc(anomaly[normal], anomaly[~normal]),
                               "fpr_at_95_tpr": fpr_at_tpr(anomaly[normal], anomaly[~normal])}
    return {"digit": digit, "n_train": len(dataset.train), "n_validation": len(dataset.validation),
            "n_test_normal": int(normal.sum()), "n_test_anomalous": int((~normal).sum()),
            "epochs": state.epochs_done, "best_epoch": state.best_epoch, "best_val_loglik": state.best_score,
            "test_loglik_normal": float(test_loglik[normal].mean()), "scores": figures,
            "seconds_training": trained - started, "seconds_scoring": scored - trained, "config": config.describe()}


def run_classes(digits: Iterable[int], folder: Path, run_one: Callable[[int], dict], config: dict,
                budget_seconds: float | None = None, log: Callable[[str], None] = print) -> dict[int, dict]:
    """Every digit's result: read where a result.json of this config exists, else computed by run_one and written
    atomically (a result of another config is run again). With a budget, no class is started once that much time
    has passed (a started one runs to its end)."""
    started = time.perf_counter()
    results = {}
    for digit in digits:
        path = Path(folder) / f"class-{digit}" / RESULT_FILE
        if path.exists():
            previous = json.loads(path.read_text())
            if previous.get("config") == config:
                results[digit] = previous
                log(f"one-class, digit {digit}: done before, skipped ({path})")
                continue
            log(f"one-class, digit {digit}: {path} holds another config; running it again")
        if budget_seconds is not None and time.perf_counter() - started > budget_seconds:
            log(f"one-class, digit {digit}: not started (the budget of {budget_seconds:.0f} s is spent)")
            continue
        result = run_one(digit)
        write_atomic(path, (json.dumps(result, indent=1) + "\n").encode())
        results[digit] = result
        log(f"one-class, digit {digit}: AUROC {result['scores']['loglik']['auroc']:.4f} (-log p(x)), "
            f"{result['seconds_training'] + result['seconds_scoring']:.0f} s")
    return results


def finished_results(folder: Path, config: dict) -> dict[int, dict]:
    """The results of this config written so far, by digit."""
    found = {}
    for path in sorted(Path(folder).glob(f"class-*/{RESULT_FILE}")):
        result = json.loads(path.read_text())
        if result.get("config") == config:
            found[int(result["digit"])] = result
    return found
