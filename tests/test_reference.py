"""reference.json written by export (training.reference): the calibration points are held out, the file is what the
service parses, and its scores are the numbers the service's engine gives for the reference's k and seed."""

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import training.export as export
import training.reference as reference
from modelrepo import load_manifest
from modelrepo.contract import REFERENCE_FILE
from modelrepo.reference import parse_reference
from service.engine.engine import ModelEngine
from service.engine.options import EngineOptions
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import calibration_split, load_dataset
from training.model import VAE

CPU = EngineOptions(providers=["CPUExecutionProvider"])  # the service's defaults: the fused graph where it fits


def test_the_calibration_split_is_held_out_from_training_validation_and_evaluation():
    """By row index, not by value (identical binarised digits occur in both splits)."""
    indices = np.arange(len(load_digits().data))
    train_rows, test_rows = train_test_split(indices, test_size=0.25, random_state=0)  # the README's protocol
    validation_rows = train_test_split(train_rows, test_size=0.1, random_state=0)[1]
    dataset = load_dataset(DataConfig("digits-binary"), "bernoulli")
    np.testing.assert_array_equal(dataset.test, load_digits().data[test_rows] >= 8)  # the test rows are these
    calibration, evaluation, chosen = calibration_split(dataset.test)
    assert len(calibration) == len(test_rows) // 2 and len(calibration) + len(evaluation) == len(test_rows)
    np.testing.assert_array_equal(calibration, dataset.test[chosen])
    rest = np.setdiff1d(np.arange(len(test_rows)), chosen)
    np.testing.assert_array_equal(evaluation, dataset.test[rest])
    assert not set(test_rows[chosen]) & set(train_rows) and not set(test_rows[chosen]) & set(validation_rows)
    assert not set(test_rows[chosen]) & set(test_rows[rest])


def test_the_calibration_split_takes_at_most_a_thousand_points():
    rows = np.arange(5000, dtype=np.float32)[:, None]
    calibration, evaluation, chosen = calibration_split(rows)
    assert len(calibration) == 1000 and len(evaluation) == 4000 and len(set(chosen)) == 1000
    assert not set(calibration[:, 0]) & set(evaluation[:, 0])


def _points(shape, n, binary, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, *shape))
    return reference.CalibrationPoints((x < 0.5 if binary else x).astype(np.float32), "test points")


MODELS = {  # config, binary data
    "bernoulli": (ModelConfig(data_shape=(1, 4, 4), latent_dim=3, hidden=(16,), likelihood="bernoulli"), True),
    "gaussian-mog": (ModelConfig(data_shape=(6,), latent_dim=2, hidden=(8,), likelihood="gaussian",
                                 prior="mixture_of_gaussians", prior_components=3), False),
    "categorical": (ModelConfig(data_shape=(9,), hidden=(8,), likelihood="bernoulli", latent="categorical",
                                groups=2, categories=3), True),
    "made": (ModelConfig(data_shape=(5,), latent_dim=2, hidden=(8,), likelihood="bernoulli", decoder="made",
                         decoder_hidden=(10,)), True),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_exported_reference_is_what_the_service_scores(tmp_path, kind):
    config, binary = MODELS[kind]
    torch.manual_seed(0)
    points = _points(config.data_shape, 30, binary)
    folder = export.export_model(VAE(config), tmp_path, "tiny", 1, reference=points, progress=False)
    document = parse_reference((folder / REFERENCE_FILE).read_bytes(), "reference.json")
    assert (document.n, document.score, document.k, document.seed) == (30, "loglik", 1000, 0)
    assert document.data == "test points" and document.background is None
    engine = ModelEngine.open(folder, CPU)
    assert engine.reference == document  # the service reads the file it wrote
    served = engine.loglik(points.x, document.k, document.seed)["loglik"]
    np.testing.assert_allclose(document.scores, served, rtol=0, atol=1e-3)
    # The points are in calibration order, and each score is the point's own: a shuffle would not match.
    assert not np.allclose(document.scores, served[::-1], rtol=0, atol=1e-3)


def test_a_failing_reference_leaves_no_version(tmp_path, tiny_vae, monkeypatch):
    """The reference is scored on the staged graphs before the rename: a failure there writes nothing."""
    def refuse(*args, **kwargs):
        raise ValueError("scores refused")

    monkeypatch.setattr(export, "write_loglik_reference", refuse)
    with pytest.raises(ValueError, match="scores refused"):
        export.export_model(tiny_vae, tmp_path, "tiny", 1, reference=_points((1, 4, 4), 5, True), progress=False)
    assert list((tmp_path / "tiny").iterdir()) == []


def test_build_on_a_user_file_writes_the_reference_of_its_test_split(tmp_path):
    from training.pipeline import run_export, run_training

    rows = (np.random.default_rng(0).uniform(size=(80, 6)) > 0.5).astype(np.float32)
    np.save(tmp_path / "bits.npy", rows)
    data = DataConfig(str(tmp_path / "bits.npy"))
    model = ModelConfig(data_shape=(6,), latent_dim=2, hidden=(8,), likelihood="bernoulli")
    run_training(data, model, TrainConfig(epochs=2, eval_every=1, batch_size=16), tmp_path / "run.pt", False)
    folder = run_export(tmp_path / "run.pt", tmp_path / "repo", "bits", 1, False)
    document = parse_reference((folder / REFERENCE_FILE).read_bytes(), "reference.json")
    test = train_test_split(rows, test_size=0.25, random_state=0)[1]  # 20 rows: the calibration split takes 10
    assert document.n == len(calibration_split(test)[0]) == 10
    assert document.data.startswith("bits: calibration split, 10 of the 20 test rows")
    served = ModelEngine.open(folder, CPU).loglik(calibration_split(test)[0], 1000, 0)["loglik"]
    np.testing.assert_allclose(document.scores, served, rtol=0, atol=1e-3)


def test_the_reference_command_rewrites_a_version_as_export_wrote_it(tmp_path, tiny_vae):
    """`python -m training reference` runs export's code on a version already in place, from its manifest's data."""
    from training.pipeline import run_reference

    rows = (np.random.default_rng(1).uniform(size=(40, 1, 4, 4)) > 0.5).astype(np.float32)
    np.save(tmp_path / "bits.npy", rows)
    data = DataConfig(str(tmp_path / "bits.npy"))
    points = reference.calibration_points(data, "bernoulli")
    folder = export.export_model(tiny_vae, tmp_path, "tiny", 1, {"dataset": data.to_dict()}, reference=points,
                                 progress=False)
    written = (folder / REFERENCE_FILE).read_bytes()
    (folder / REFERENCE_FILE).unlink()
    run_reference(tmp_path, "tiny", 1)
    assert (folder / REFERENCE_FILE).read_bytes() == written
    assert load_manifest(folder).name == "tiny"


def test_a_ratio_reference_subtracts_the_background(tmp_path):
    from training.pipeline import run_reference

    rows = (np.random.default_rng(2).uniform(size=(40, 8)) > 0.5).astype(np.float32)
    np.save(tmp_path / "bits.npy", rows)
    data = DataConfig(str(tmp_path / "bits.npy"))
    config = ModelConfig(data_shape=(8,), latent_dim=2, hidden=(8,), likelihood="bernoulli")
    for name, seed in (("model", 0), ("other", 1), ("wide", 2)):
        torch.manual_seed(seed)
        shape_of = (16,) if name == "wide" else (8,)
        export.export_model(VAE(ModelConfig(**{**config.to_dict(), "data_shape": shape_of})), tmp_path, name, 1,
                            {"dataset": data.to_dict()}, progress=False)
    run_reference(tmp_path, "model", 1, background="other:1")
    document = json.loads((tmp_path / "model" / "1" / REFERENCE_FILE).read_text())
    assert document["score"] == "likelihood_ratio" and document["background"] == "other:1"
    x = reference.calibration_points(data, "bernoulli").x
    model, other = (ModelEngine.open(tmp_path / n / "1", CPU).loglik(x, 1000, 0)["loglik"] for n in ("model", "other"))
    np.testing.assert_allclose(document["scores"], model - other, rtol=0, atol=1e-3)
    assert np.ptp(model - other) > 1e-3  # not a constant offset: each point's own ratio
    with pytest.raises(ValueError, match="data_shape"):
        run_reference(tmp_path, "model", 1, background="wide:1")
