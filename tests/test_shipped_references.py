"""The shipped models' reference.json: each one what the contract and docs/TRAINING.md say (n, k, seed, score), its
points the calibration split, and a few of its scores recomputed by the service's own engine (the fused float32
graph, or the exact sum) from the files alone."""

import json
from pathlib import Path

import numpy as np
import pytest

from modelrepo import check_graphs, load_manifest, sha256_of
from modelrepo.contract import REFERENCE_FILE
from modelrepo.reference import parse_reference
from service.engine.engine import ModelEngine
from service.engine.options import EngineOptions
from training.config import DataConfig
from training.data import calibration_split, load_dataset

REPOSITORY = Path(__file__).resolve().parents[1] / "models"
LOGLIK_REFERENCES = ["digits", "digits-binary", "digits-mog", "digits-binary-discrete", "mnist-binary",
                     "digits-binary-background", "mnist-binary-background"]
RATIOS = {  # name -> (graphs of, background)
    "digits-binary-ratio": ("digits-binary", "digits-binary-background"),
    "mnist-binary-ratio": ("mnist-binary", "mnist-binary-background"),
}
SHIPPED_EPOCHS = {"digits-binary-background": None, "mnist-binary-background": 100}  # None: the preset's own
CPU = EngineOptions(providers=["CPUExecutionProvider"])


def _reference(name):
    return parse_reference((REPOSITORY / name / "1" / REFERENCE_FILE).read_bytes(), f"{name}/1/{REFERENCE_FILE}")


def _calibration(name):
    manifest = load_manifest(REPOSITORY / name / "1")
    dataset = load_dataset(DataConfig.from_dict(manifest.dataset), manifest.likelihood.type)
    return calibration_split(dataset.test)[0], len(dataset.test)


def _served(name, x):
    return ModelEngine.open(REPOSITORY / name / "1", CPU).loglik(x, 1000, 0)["loglik"]


def _probes(n):
    return np.unique([0, 1, n // 2, n - 1])  # a few calibration points, both ends included


@pytest.mark.parametrize("name", LOGLIK_REFERENCES)
def test_shipped_loglik_reference_scores_the_calibration_split(name):
    reference = _reference(name)
    calibration, test_rows = _calibration(name)
    assert (reference.score, reference.k, reference.seed, reference.background) == ("loglik", 1000, 0, None)
    assert reference.n == len(calibration) == min(test_rows // 2, 1000)
    assert reference.data.startswith(f"{load_manifest(REPOSITORY / name / '1').dataset['source']}: calibration "
                                     f"split, {reference.n} of the {test_rows} test rows")
    probes = _probes(reference.n)
    scores = np.asarray(reference.scores)
    np.testing.assert_allclose(scores[probes], _served(name, calibration[probes]), rtol=0, atol=1e-3)
    # Within a few nats of the test figure (K = 5000, all test rows): the same model on half the same rows.
    assert abs(scores.mean() - load_manifest(REPOSITORY / name / "1").metrics["test_loglik"]) < 3


@pytest.mark.parametrize("name", sorted(RATIOS))
def test_shipped_ratio_model_shares_the_graphs_and_subtracts_its_background(name):
    graphs_of, background = RATIOS[name]
    folder, source_folder = REPOSITORY / name / "1", REPOSITORY / graphs_of / "1"
    manifest, source = load_manifest(folder), load_manifest(source_folder)
    check_graphs(manifest, folder)
    for graph in (manifest.encoder, manifest.decoder):
        assert (folder / graph).read_bytes() == (source_folder / graph).read_bytes()
    assert manifest.sha256 == source.sha256 == {f: sha256_of(folder / f) for f in (manifest.encoder, manifest.decoder)}
    assert manifest.graphs_of == f"{graphs_of}:1" and "likelihood ratio" in manifest.description
    reference = _reference(name)
    assert (reference.score, reference.k, reference.seed) == ("likelihood_ratio", 1000, 0)
    assert reference.background == f"{background}:1"
    subtracted = load_manifest(REPOSITORY / background / "1")
    assert subtracted.data_shape == manifest.data_shape and subtracted.dataset == manifest.dataset
    calibration, _ = _calibration(name)
    assert reference.n == len(calibration)
    probes = _probes(reference.n)
    ratio = _served(name, calibration[probes]) - _served(background, calibration[probes])
    np.testing.assert_allclose(np.asarray(reference.scores)[probes], ratio, rtol=0, atol=1e-3)
    # The model and the background alone give other numbers: the reference is their difference, not either one.
    assert np.all(np.abs(np.asarray(reference.scores)[probes] - _served(graphs_of, calibration[probes])) > 1)


@pytest.mark.parametrize("name", sorted(SHIPPED_EPOCHS))
def test_the_background_preset_is_the_shipped_background(name):
    """The recipe, mu included; mnist-binary-background was shipped with fewer epochs (docs/TRAINING.md)."""
    import dataclasses

    from training.presets import PRESETS

    manifest = json.loads((REPOSITORY / name / "1" / "manifest.json").read_text())
    preset = PRESETS[name]
    train = dataclasses.replace(preset.train, epochs=SHIPPED_EPOCHS[name] or preset.train.epochs)
    as_json = lambda config: json.loads(json.dumps(config.to_dict()))
    assert manifest["training"]["train_config"] == as_json(train)
    assert manifest["model_config"] == as_json(preset.model)
    assert manifest["description"] == preset.description
