"""Background models for likelihood ratios (Ren et al. 2019) and the choice of their perturbation rate mu.

A background model has the base model's architecture and training recipe, trained on inputs perturbed at rate mu
(TrainConfig.perturbation, training.data.perturb): it learns what the data's population shares, such as blank
backgrounds and stroke statistics, and little of what makes a digit a digit. The score of a likelihood-ratio
reference is log p_model(x) - log p_background(x).

mu is chosen on the validation split alone, never the test rows or any OOD test set:

    criterion(mu) = the mean, over three synthetic OOD sets made from the validation rows, of the AUROC of
                    log p_model(x) - log p_background_mu(x) between the validation rows and that set:
                    mirrored (left to right), upside down, and chimeras (each row's top half above the bottom
                    half of the row before it): the pixels and their statistics kept, the digits not

the highest wins, the smaller mu on a tie. Both models are scored on their exported graphs with the reference's
estimator (training.reference.version_loglik), so the criterion uses the numbers the service would give. (Images
rolled by half along each axis were tried first and dropped: every rate, and log p_model alone, scored 1.0 there.)
"""

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from modelrepo import load_manifest
from modelrepo.files import write_atomic
from training.data import load_dataset
from training.export import export_model
from training.pipeline import version_folder
from training.presets import PRESETS
from training.reference import version_loglik
from training.train import train

CRITERION = ("mean AUROC of log p_model - log p_background between the validation rows and three synthetic OOD "
             "sets made from them: mirrored, upside down, chimeras of two rows' halves")


def image_shape(data_shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of a data point: its last two axes, or the square a flat row of H * H values makes."""
    if len(data_shape) >= 2:
        return data_shape[-2], data_shape[-1]
    side = math.isqrt(data_shape[0])
    if side * side != data_shape[0]:
        raise ValueError(f"data_shape {list(data_shape)} is not an image; the study transforms images")
    return side, side


def synthetic_ood(x: np.ndarray) -> dict[str, np.ndarray]:
    """x (N, *data_shape) -> the synthetic OOD sets of the criterion, each (N, *data_shape)."""
    height, width = image_shape(x.shape[1:])
    images = x.reshape(len(x), -1, height, width)  # (N, channels, H, W)
    chimeras = np.concatenate([images[:, :, : height // 2], np.roll(images, 1, axis=0)[:, :, height // 2 :]], axis=2)
    sets = {"mirrored": images[..., ::-1], "upside_down": images[:, :, ::-1], "chimeras": chimeras}
    return {name: np.ascontiguousarray(value).reshape(x.shape) for name, value in sets.items()}


def ratio_auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """AUROC of the scores (higher: more in distribution) at telling `inside` points from `outside` ones."""
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


def aurocs(inside: np.ndarray, outside: dict[str, np.ndarray]) -> dict[str, float]:
    """The AUROC against each synthetic set, and their mean (the criterion)."""
    values = {name: ratio_auroc(inside, scores) for name, scores in outside.items()}
    return {**values, "mean": float(np.mean(list(values.values())))}


def study(preset_name: str, repository: Path, model: str, rates: tuple[float, ...], k: int = 1000,
          epochs: int | None = None, runs: Path = Path("runs/background-study")) -> dict:
    """Train the preset at each rate (checkpoints under `runs`, resumed when there), score the criterion, choose."""
    preset = PRESETS[preset_name]
    dataset = load_dataset(preset.data, preset.model.likelihood)
    model_config = dataclasses.replace(preset.model, data_shape=dataset.data_shape)
    _, validation = dataset.split_validation(preset.train.val_fraction)
    validation = np.ascontiguousarray(validation, dtype=np.float32)
    synthetic = synthetic_ood(validation)
    base_folder = version_folder(repository, model)
    base = load_manifest(base_folder)
    score = lambda manifest, folder, x: version_loglik(manifest, folder, x, k, progress=False)
    base_inside = score(base, base_folder, validation)
    base_outside = {name: score(base, base_folder, x) for name, x in synthetic.items()}
    rows = []
    for rate in rates:
        train_config = dataclasses.replace(preset.train, perturbation=rate, **({"epochs": epochs} if epochs else {}))
        checkpoint = train(dataset, preset.data, model_config, train_config, runs / f"{preset_name}-mu{rate:g}.pt",
                           resume=True)
        with tempfile.TemporaryDirectory() as scratch:
            folder = export_model(checkpoint.best_model(), Path(scratch), "background", 1, progress=False)
            background = load_manifest(folder)
            inside = score(background, folder, validation)
            outside = {name: base_outside[name] - score(background, folder, x) for name, x in synthetic.items()}
        rows.append({"rate": rate, "auroc_ratio": aurocs(base_inside - inside, outside),
                     "background_val_loglik": float(inside.mean()), "best_epoch": checkpoint.best_epoch,
                     "epochs": train_config.epochs})
    chosen = max(rows, key=lambda row: (row["auroc_ratio"]["mean"], -row["rate"]))
    return {"preset": preset_name, "model": model, "criterion": CRITERION, "k": k, "n_validation": len(validation),
            "auroc_loglik": aurocs(base_inside, base_outside), "model_val_loglik": float(base_inside.mean()),
            "rates": rows, "chosen": chosen["rate"]}


def write_study(preset_name: str, repository: Path, model: str, rates: tuple[float, ...], output: Path,
                k: int = 1000, epochs: int | None = None) -> str:
    result = study(preset_name, repository, model, rates, k, epochs)
    write_atomic(output, (json.dumps(result, indent=2) + "\n").encode())
    lines = [f"{preset_name}: {CRITERION} (n = {result['n_validation']} each, k = {k})",
             f"log p_model alone: {_aurocs_text(result['auroc_loglik'])}"]
    lines += [f"mu = {row['rate']:g}: {_aurocs_text(row['auroc_ratio'])}; background validation log p(x) "
              f"{row['background_val_loglik']:.2f} (best epoch {row['best_epoch']} of {row['epochs']})"
              for row in result["rates"]]
    return "\n".join(lines + [f"chosen mu = {result['chosen']:g}"])


def _aurocs_text(values: dict[str, float]) -> str:
    return f"AUROC {values['mean']:.4f} (" + ", ".join(f"{n} {v:.4f}" for n, v in values.items() if n != "mean") + ")"
