"""The fused scoring graph derived from a model's two graphs: exact answers, accuracy against float64,
joins across opsets, bounded slices, and the fallback when two graphs cannot be joined."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modelrepo import load_manifest
from service.engine.fusion import OUTPUTS, FusionError, build_scoring_model
from service.engine.engine import ModelEngine
from service.engine.options import EngineOptions
from service.engine.sessions import CPU
from tests.service.handmade import LinearGaussian, OneDimensionalBernoulli

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_only_three_numbers_per_point_leave_the_graph(tmp_path):
    folder = LinearGaussian().write(tmp_path)
    manifest = load_manifest(folder)
    fused = build_scoring_model(manifest, onnx.load(folder / "encoder.onnx"), onnx.load(folder / "decoder.onnx"))
    onnx.checker.check_model(fused, full_check=True)
    assert [i.name for i in fused.graph.input] == ["x", "eps"]
    assert [o.name for o in fused.graph.output] == list(OUTPUTS)
    assert all(len(o.type.tensor_type.shape.dim) == 1 for o in fused.graph.output)


def test_graphs_at_different_opsets_are_joined(tmp_path):
    model = LinearGaussian()
    model.decoder.opset_import[0].version = 20  # Flatten, MatMul, Add, Reshape: the same at 17 and 20
    folder = model.write(tmp_path)
    engine = ModelEngine.open(folder, EngineOptions([CPU], loglik_graph="fused"))
    assert engine.describe()["loglik_graph"] == "fused (fp32)"
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    estimate = engine.loglik(x, 50, 0)
    np.testing.assert_allclose(estimate["loglik"], model.exact_loglik(x), atol=2e-4)


@pytest.mark.parametrize("name", ["digits", "digits-binary"])
def test_fused_float32_agrees_with_the_float64_path_on_the_shipped_models(name):
    folder = MODELS / name / "1"
    manifest = load_manifest(folder)
    fused = ModelEngine.open(folder, EngineOptions([CPU], loglik_graph="fused"))
    separate = ModelEngine.open(folder, EngineOptions([CPU], loglik_graph="separate"))
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(16, *manifest.data_shape)).astype(np.float32)
    if manifest.likelihood.type == "bernoulli":
        x = (x > 0.5).astype(np.float32)
    ours = fused.loglik(x, 500, 3)
    reference = separate.loglik(x, 500, 3)
    for field in ("loglik", "elbo"):
        assert np.abs(ours[field] - reference[field]).max() < 1e-2
    np.testing.assert_allclose(ours["stderr"], reference["stderr"], rtol=1e-2, atol=1e-6)


def test_fp16_decoder_is_close_on_a_bernoulli_model(tmp_path):
    model = OneDimensionalBernoulli()
    folder = model.write(tmp_path)
    engine = ModelEngine.open(folder, EngineOptions([CPU], loglik_graph="fused", precision="fp16"))
    assert engine.describe()["loglik_graph"] == "fused (fp16)"
    x = np.array([[[[1, 0, 1], [1, 0, 0]]], [[[1, 1, 1], [1, 1, 1]]]], dtype=np.float32)
    estimate = engine.loglik(x, 5000, 0)
    assert np.abs(estimate["loglik"] - model.exact_loglik(x)).max() < 0.05


def test_slices_of_the_fused_run_stay_within_the_work_bound(tmp_path, monkeypatch):
    folder = LinearGaussian().write(tmp_path)
    options = EngineOptions([CPU], loglik_graph="fused", work_elements=2048)  # ~409 (point, sample) pairs per run
    engine = ModelEngine.open(folder, options)
    uploads, real_upload = [], ort.OrtValue.ortvalue_from_numpy

    def spy(array, *args):  # ONNX Runtime's own upload, recording each array bound to the graph
        uploads.append(array.shape)
        return real_upload(array, *args)

    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy", spy)
    x = np.zeros((9, 5), np.float32)
    estimate = engine.loglik(x, 1000, 0)
    assert len(estimate["loglik"]) == 9
    eps_slices = [shape[0] for shape in uploads if shape[1:] == (3,)]
    blocks = [shape[0] for shape in uploads if shape[1:] == (5,)]
    assert sum(eps_slices) == 1000 and max(eps_slices) <= 409  # K in slices, each uploaded once
    assert sum(blocks) == 9 and max(blocks) * max(eps_slices) <= 409


def test_a_model_that_cannot_be_fused_serves_on_two_graphs_and_says_why(tmp_path, make_client, monkeypatch):
    def refuse(*_, **__):  # a fault the shipped graphs cannot produce: the join itself fails
        raise FusionError("encoder and decoder define different local functions named 'f'")

    monkeypatch.setattr("service.engine.choice.build_scoring_model", refuse)
    model = LinearGaussian()
    model.write(tmp_path)
    client = make_client(tmp_path, loglik_graph="fused")
    version = client.get("/models/linear").json()["versions"][0]
    assert version["ready"] and version["loglik_graph"].startswith("separate (the fused graph could not be built: ")
    assert "local functions" in version["loglik_graph"]
    body = client.post("/loglik", json={"x": [[0.5] * 5], "k": 10}).json()
    np.testing.assert_allclose(body["loglik"], model.exact_loglik(np.full((1, 5), 0.5)), atol=2e-4)


