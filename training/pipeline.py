"""The steps the CLI runs, each reading and writing files beside the checkpoint.

    runs/<name>.pt                 checkpoint (configs, weights, history)
    runs/<name>.pt.metrics.json    evaluate: test metrics
    runs/<name>.pt.baselines.json  baselines: classical models on the same split
Export gathers all three into manifest.json.
"""

import dataclasses
import json
import sys
from pathlib import Path

from modelrepo.files import write_atomic
from training.checkpoint import load_checkpoint
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import load_dataset
from training.distributed import rank_device
from training.world import ONE_PROCESS, World, check_data_parallel


def sidecar(checkpoint_path: Path, kind: str) -> Path:
    return checkpoint_path.with_name(f"{checkpoint_path.name}.{kind}.json")


def write_json_atomic(path: Path, value: object) -> None:
    write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def run_training(data: DataConfig, model: ModelConfig, train: TrainConfig, checkpoint_path: Path, resume: bool,
                 device: str = "cpu", world: World = ONE_PROCESS):
    """Train as one process, or as one rank of a torchrun launch (`world`; training/distributed.py)."""
    from training.images import image_entry
    from training.train import train as train_model

    check_data_parallel(model, train, world)  # before the data loads
    dataset = load_dataset(data, model.likelihood)
    model = dataclasses.replace(model, data_shape=dataset.data_shape)  # the data (reshaped by --data-shape) decides
    image_entry(data, model.data_shape)  # a wrong --image-shape fails now, not at export after the training
    return train_model(dataset, data, model, train, checkpoint_path, resume=resume,
                       device=rank_device(check_device(device), world), world=world)


def check_device(device: str) -> str:
    """`device` as torch names it, or ValueError saying what is available."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a device; use cpu or cuda (cuda:N)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this torch sees no CUDA GPU; use --device cpu")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: only cpu and cuda are supported")
    return str(parsed)


def run_evaluation(checkpoint_path: Path, k: int, seed: int, device: str = "cpu") -> dict:
    from training.evaluate import evaluate

    if k < 1:
        raise ValueError(f"--k must be >= 1, got {k}")
    checkpoint = load_checkpoint(checkpoint_path)
    dataset = load_dataset(checkpoint.data_config, checkpoint.model_config.likelihood)
    metrics = evaluate(checkpoint.best_model(), dataset.test, k=k, seed=seed, device=check_device(device))
    metrics.update(dataset=dataset.name, best_epoch=checkpoint.best_epoch,
                   best_val_loglik=checkpoint.best_score, n_train=len(dataset.train))
    write_json_atomic(sidecar(checkpoint_path, "metrics"), metrics)
    return metrics


def run_baselines(data: DataConfig, model: ModelConfig, train: TrainConfig, checkpoint_path: Path | None = None) -> list[dict]:
    from training.baselines import binary_baselines, continuous_baselines

    dataset = load_dataset(data, model.likelihood)
    if model.likelihood == "bernoulli":
        scores = binary_baselines(dataset, train.val_fraction)
    else:
        scores = continuous_baselines(dataset, model.latent_dim, train.val_fraction)
    result = [dataclasses.asdict(s) for s in scores]
    if checkpoint_path is not None:
        write_json_atomic(sidecar(checkpoint_path, "baselines"), result)
    return result


def run_export(checkpoint_path: Path, repository: Path, name: str, version: int, force: bool) -> Path:
    """Export the checkpoint's best model with its metrics, baselines and the reference.json of its calibration
    split (training.reference)."""
    from training.export import export_model
    from training.presets import PRESETS
    from training.images import image_entry

    checkpoint = load_checkpoint(checkpoint_path)
    points = reference_points(checkpoint.data_config, checkpoint.model_config.likelihood)
    extra: dict = {"dataset": checkpoint.data_config.to_dict()}
    image = image_entry(checkpoint.data_config, checkpoint.model_config.data_shape)
    if image is not None:
        extra["image"] = image
    preset = PRESETS.get(name)
    if preset is not None and preset.data == checkpoint.data_config:
        extra["description"] = preset.description
    extra["training"] = {
        "train_config": checkpoint.train_config.to_dict(),
        "epochs_done": checkpoint.epochs_done,
        "best_epoch": checkpoint.best_epoch,
        "best_val_loglik": checkpoint.best_score,
    }
    for kind in ("metrics", "baselines"):
        path = sidecar(checkpoint_path, kind)
        if path.exists():
            extra[kind] = json.loads(path.read_text())
    return export_model(checkpoint.best_model(), repository, name, version, extra, force=force, reference=points)


def reference_points(data: DataConfig, likelihood: str):
    """The calibration points of the data's test rows, or None (saying so) when the test split is too small."""
    from training.reference import calibration_points

    points = calibration_points(data, likelihood)
    if len(points.x) == 0:
        print(f"no reference.json: the test split of {data.source} has fewer than 2 rows, and the calibration "
              "split takes half of them", file=sys.stderr)
        return None
    return points


def run_reference(repository: Path, name: str, version: int, background: str | None = None) -> Path:
    """(Re)write reference.json of <repository>/<name>/<version> from the data set its manifest names, as export
    writes it; with `background` ("name:version" in the same repository), a likelihood-ratio reference."""
    from modelrepo import load_manifest
    from training.reference import write_loglik_reference, write_ratio_reference

    folder = Path(repository) / name / str(version)
    manifest = load_manifest(folder)
    points = reference_points(manifest_data(manifest), manifest.likelihood.type)
    if points is None:
        raise ValueError(f"{folder}: no calibration points, so no reference")
    if background is None:
        return write_loglik_reference(manifest, folder, points)
    background_folder = version_folder(repository, background)
    return write_ratio_reference(manifest, folder, load_manifest(background_folder), background_folder, points)


def manifest_data(manifest) -> DataConfig:
    """The data set a version was trained on, as its manifest's "dataset" entry records it."""
    recorded = getattr(manifest, "dataset", None)
    if not isinstance(recorded, dict) or "source" not in recorded:
        raise ValueError(f"{manifest.reference}: its manifest has no \"dataset\" entry naming its data, so its "
                         "calibration split is unknown")
    return DataConfig.from_dict(recorded)


def version_folder(repository: Path, reference: str) -> Path:
    """<repository>/<name>/<version> of "name:version"."""
    name, _, version = reference.rpartition(":")
    if not name or not version.isdigit():
        raise ValueError(f"{reference!r}: name a version as name:version, e.g. digits-binary-background:1")
    return Path(repository) / name / version
