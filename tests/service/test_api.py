"""Encode, decode, sample, models, health and metrics, on hand-built models and on the shipped ones."""

import json

import numpy as np
import pytest

from service.app import create_app
from service.settings import PROJECT_ROOT, Settings
from tests.service.handmade import LinearGaussian, OneDimensionalBernoulli, affine_graph, write_model


def test_encode_returns_the_graph_outputs_and_seeded_samples(client):
    model = LinearGaussian()
    x = np.random.default_rng(0).standard_normal((3, 5))
    body = client.post("/encode", json={"x": x.tolist(), "samples": 4, "seed": 9}).json()
    assert body["model"] == "linear:2"  # the highest version answers "linear"
    mu, logvar, z = (np.array(body[k]) for k in ("mu", "logvar", "z"))
    assert mu.shape == (3, 3) and logvar.shape == (3, 3) and z.shape == (3, 4, 3)
    again = client.post("/encode", json={"x": x.tolist(), "samples": 4, "seed": 9}).json()
    assert again == body
    plain = client.post("/encode", json={"model": "linear:1", "x": x.tolist()}).json()
    assert "z" not in plain
    posterior_var = 1.0 / (1.0 + (model.weight**2).sum(0) / model.noise_var)
    expected_mu = (x - model.bias) @ model.weight * posterior_var / model.noise_var
    np.testing.assert_allclose(plain["mu"], expected_mu, atol=1e-5)
    np.testing.assert_allclose(plain["logvar"], np.log(posterior_var)[None].repeat(3, 0), atol=1e-5)


def test_encode_samples_follow_q(client):
    body = client.post("/encode", json={"model": "linear:1", "x": [[0.5] * 5], "samples": 1000, "seed": 1}).json()
    z = np.array(body["z"])[0]  # (1000, 3)
    mu, std = np.array(body["mu"][0]), np.exp(0.5 * np.array(body["logvar"][0]))
    assert np.all(np.abs(z.mean(0) - mu) < 4 * std / np.sqrt(1000))
    assert np.all(np.abs(z.std(0) / std - 1) < 0.1)


def test_decode_gives_nested_means_and_likelihood_parameters(client):
    z = [[0.5], [-1.0]]
    body = client.post("/decode", json={"model": "bern1d", "z": z}).json()
    model = OneDimensionalBernoulli()
    logits = np.array(z) * model.slope + model.offset  # (2, 6)
    assert np.array(body["logits"]).shape == (2, 1, 2, 3) and "logvar" not in body
    np.testing.assert_allclose(np.array(body["logits"]).reshape(2, 6), logits, atol=1e-5)
    np.testing.assert_allclose(np.array(body["mean"]).reshape(2, 6), 1 / (1 + np.exp(-logits)), atol=1e-6)
    gaussian = client.post("/decode", json={"model": "linear:1", "z": [[0, 0, 0]]}).json()
    np.testing.assert_allclose(gaussian["mean"], [LinearGaussian().bias], atol=1e-5)
    np.testing.assert_allclose(gaussian["logvar"], [[np.log(0.3)] * 5], atol=1e-5)


def test_sample_draws_from_the_prior_and_decodes(client):
    mean = client.post("/sample", json={"model": "bern1d", "n": 400, "seed": 3}).json()
    z = np.array(mean["z"])
    assert z.shape == (400, 1) and abs(z.mean()) < 0.2 and abs(z.std() - 1) < 0.1
    assert np.array(mean["x"]).shape == (400, 1, 2, 3)
    cold = client.post("/sample", json={"model": "bern1d", "n": 400, "seed": 3, "temperature": 0.5}).json()
    np.testing.assert_allclose(np.array(cold["z"]), 0.5 * z, rtol=1e-6)
    drawn = client.post("/sample", json={"model": "bern1d", "n": 400, "seed": 3, "mode": "sample"}).json()
    values = np.array(drawn["x"])
    assert set(np.unique(values)) <= {0.0, 1.0}
    # Each pixel's frequency matches its mean probability, averaged over z.
    assert np.all(np.abs(values.mean(0) - np.array(mean["x"]).mean(0)) < 0.1)
    assert client.post("/sample", json={"model": "bern1d", "n": 2, "seed": 3}).json()["z"] == mean["z"][:2]
    fresh = [client.post("/sample", json={"model": "bern1d", "n": 2}).json()["z"] for _ in range(2)]
    assert fresh[0] != fresh[1]  # no seed: fresh draws


def test_models_lists_every_version_and_the_reason_a_version_failed(repository, make_client):
    broken = write_model(repository, "broken", 1, (5,), 2, "gaussian", LinearGaussian().encoder, LinearGaussian().decoder)
    (repository / "linear" / "3").mkdir()  # a version folder without a manifest
    write_model(repository, "shape", 1, (5,), 3, "gaussian",  # encoder gives 2 latent dims, manifest says 3
                affine_graph("x", (5,), {"mu": (np.zeros((5, 2)), np.zeros(2), ("n",)),
                                         "logvar": (np.zeros((5, 2)), np.zeros(2), ("n",))}),
                LinearGaussian().decoder)
    assert broken.exists()
    client = make_client(repository)
    listing = client.get("/models").json()
    by_name = {m["name"]: m for m in listing["models"]}
    assert listing["default_model"] == "linear" and set(by_name) == {"bern1d", "broken", "linear", "shape"}
    linear = by_name["linear"]
    assert linear["default_version"] == 2
    assert [v["ready"] for v in linear["versions"]] == [True, True, False]
    assert "manifest.json: missing" in linear["versions"][2]["error"]
    assert linear["versions"][0]["provider"] == "CPUExecutionProvider"
    assert linear["versions"][0]["manifest"]["data_shape"] == [5]
    assert "encoder.onnx output 'mu': axis 1 is 3, expected 2" in by_name["broken"]["versions"][0]["error"]
    assert "expected [2, 3]" in by_name["shape"]["versions"][0]["error"]
    assert client.get("/models/linear").json() == linear
    assert client.get("/models/nothing").status_code == 404
    failed = client.post("/encode", json={"model": "shape", "x": [[0] * 5]})
    assert failed.status_code == 503 and "failed to load" in failed.json()["detail"]
    ready = client.get("/health/ready").json()
    assert ready["status"] == "ready" and "shape/1" in ready["failed"] and "linear/3" in ready["failed"]
    assert client.post("/encode", json={"model": "linear", "x": [[0] * 5]}).status_code == 200  # others serve


def test_health(client, tmp_path, make_client):
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["cache"] == {"backend": "memory", "state": "ok", "entries": 0, "bytes": 0}
    assert ready.json()["provider"] == "CPUExecutionProvider"
    (tmp_path / "empty").mkdir()
    empty = make_client(tmp_path / "empty")
    assert empty.get("/health/ready").status_code == 503


def test_metrics_count_requests_cache_hits_and_batch_sizes(client):
    for _ in range(2):
        client.post("/loglik", json={"model": "linear:1", "x": [[0.0] * 5] * 3, "k": 10})
    client.post("/encode", json={"model": "nope", "x": [[0.0] * 5]})
    text = client.get("/metrics").text
    assert 'vae_cache_misses_total{operation="loglik"} 1.0' in text
    assert 'vae_cache_hits_total{operation="loglik"} 1.0' in text
    assert 'vae_http_requests_total{endpoint="/loglik",method="POST",status="200"} 2.0' in text
    assert 'vae_http_requests_total{endpoint="/encode",method="POST",status="404"} 1.0' in text
    assert 'vae_batch_size_sum{operation="loglik"} 6.0' in text
    assert 'vae_http_request_duration_seconds_count{endpoint="/loglik"} 2.0' in text


def test_shipped_models_serve_and_score_their_own_samples_sensibly(make_client):
    client = make_client(PROJECT_ROOT / "models", default_model="digits")
    assert client.get("/health/ready").json()["models"] == ["digits:1", "digits-binary:1"]
    drawn = client.post("/sample", json={"model": "digits-binary", "n": 20, "seed": 0, "mode": "sample"}).json()
    own = client.post("/loglik", json={"model": "digits-binary", "x": drawn["x"], "k": 200}).json()
    noise = (np.random.default_rng(0).uniform(size=(20, 64)) < 0.5).astype(int).tolist()
    other = client.post("/loglik", json={"model": "digits-binary", "x": noise, "k": 200}).json()
    # Its own samples are far more likely than coin flips (64 log 2 = 44 nats is the coin flips' own model).
    assert np.mean(own["loglik"]) > np.mean(other["loglik"]) + 20
    assert client.post("/encode", json={"x": [[0.5] * 64]}).json()["model"] == "digits:1"


def test_settings_fail_fast_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        Settings(model_repository=tmp_path / "missing")
    with pytest.raises(ValueError, match="must start with redis://"):
        Settings(redis_url="localhost:6379")
    with pytest.raises(ValueError, match="device"):
        Settings(device="tpu")
    from fastapi.testclient import TestClient

    from service.runtime import cuda_usable

    if cuda_usable():  # on a GPU machine, demanding CUDA gets it
        with TestClient(create_app(Settings(device="cuda"))) as client:
            assert client.get("/health/ready").json()["provider"] == "CUDAExecutionProvider"
    else:
        with pytest.raises(RuntimeError, match="VAE_DEVICE=cuda"):
            with TestClient(create_app(Settings(device="cuda"))):
                pass
    assert json.loads(json.dumps(Settings().model_dump(mode="json")))["default_model"] == "digits"


def test_a_model_that_breaks_at_run_time_answers_with_a_clear_error(repository, make_client):
    from onnx import TensorProto, helper, numpy_helper

    # Declares a dynamic batch but reshapes to a fixed batch of 2: passes every start-up check, fails on 3.
    shape = numpy_helper.from_array(np.array([2, 5], dtype=np.int64), "fixed")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "fixed"], ["mu"]), helper.make_node("Identity", ["mu"], ["logvar"])],
        "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 5]) for n in ("mu", "logvar")], [shape])
    encoder = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    decoder = affine_graph("z", (5,), {"mean": (np.eye(5), np.zeros(5), (5,)), "logvar": (np.zeros((5, 5)), np.zeros(5), (5,))})
    write_model(repository, "fragile", 1, (5,), 5, "gaussian", encoder, decoder)
    client = make_client(repository)
    assert client.post("/encode", json={"model": "fragile", "x": [[0] * 5] * 2}).status_code == 200
    response = client.post("/encode", json={"model": "fragile", "x": [[0] * 5] * 3})
    assert response.status_code == 500
    assert "model fragile:1: its encoder graph failed on a batch of 3" in response.json()["detail"]
    assert client.post("/encode", json={"model": "linear", "x": [[0] * 5] * 3}).status_code == 200
