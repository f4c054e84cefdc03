"""The benchmark's naive peers (bench/peers/) do the contract's work, so that racing them means something:
exact answers on a hand-built linear-Gaussian model, and the same numbers as the service for the same seed."""

import importlib.util
import io
from pathlib import Path

import numpy as np
import orjson
from fastapi.testclient import TestClient

from bench import in_process
from bench.batches import RowPool
from service.settings import Settings
from tests.service.handmade import LinearGaussian

PEERS = Path(__file__).resolve().parents[1] / "bench" / "peers"


def peer_client(module: str, monkeypatch, **files: Path) -> TestClient:
    """The peer app, imported afresh with its model files in the environment, as uvicorn would import it."""
    for variable, path in files.items():
        monkeypatch.setenv(variable, str(path))
    spec = importlib.util.spec_from_file_location(f"peer_{module}", PEERS / f"{module}.py")
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    return TestClient(peer.app)


def test_loglik_peer_is_exact_when_the_proposal_is_the_posterior(tmp_path, monkeypatch):
    model = LinearGaussian()
    folder = model.write(tmp_path)
    client = peer_client("loglik_orjson", monkeypatch, ENCODER_ONNX=folder / "encoder.onnx",
                         DECODER_ONNX=folder / "decoder.onnx")
    x = np.random.default_rng(0).standard_normal((4, model.data_dim))
    answer = client.post("/loglik", content=orjson.dumps({"model": "linear", "x": x.tolist(), "k": 50})).json()
    exact = model.exact_loglik(x)  # every importance weight is p(x): loglik = elbo = log p(x), stderr 0
    np.testing.assert_allclose(answer["loglik"], exact, atol=2e-4)
    np.testing.assert_allclose(answer["elbo"], exact, atol=2e-4)
    np.testing.assert_allclose(answer["stderr"], 0.0, atol=1e-4)
    assert answer["k"] == 50


def test_loglik_peer_answers_what_the_service_computes_for_the_same_seed(tmp_path, monkeypatch):
    model = LinearGaussian(proposal_shift=0.4, proposal_widen=1.8)  # a poor proposal: the weights differ
    folder = model.write(tmp_path)
    client = peer_client("loglik_orjson", monkeypatch, ENCODER_ONNX=folder / "encoder.onnx",
                         DECODER_ONNX=folder / "decoder.onnx")
    x = np.random.default_rng(1).standard_normal((3, model.data_dim)).astype(np.float32)
    body = {"model": "linear", "x": x.tolist(), "k": 200, "seed": 5}
    answer = client.post("/loglik", content=orjson.dumps(body)).json()
    settings = Settings(model_repository=tmp_path)
    engine = in_process.load_engine(folder, settings, loglik_graph="separate")  # float64 on the host
    ours = in_process.loglik(engine, x, 200, 5)
    assert ours["stderr"].min() > 1e-3  # the case is not the trivial one above
    np.testing.assert_allclose(answer["loglik"], ours["loglik"], atol=1e-4)
    np.testing.assert_allclose(answer["stderr"], ours["stderr"], rtol=1e-3)
    np.testing.assert_allclose(answer["elbo"], ours["elbo"], atol=1e-4)


def test_decode_peer_returns_the_decoders_outputs(tmp_path, monkeypatch):
    model = LinearGaussian()
    folder = model.write(tmp_path)
    client = peer_client("decode_orjson", monkeypatch, DECODER_ONNX=folder / "decoder.onnx")
    z = np.random.default_rng(2).standard_normal((2, model.latent_dim))
    answer = client.post("/decode", content=orjson.dumps({"model": "linear", "z": z.tolist()})).json()
    np.testing.assert_allclose(answer["mean"], z @ model.weight.T + model.bias, atol=1e-5)  # x = W z + b
    np.testing.assert_allclose(answer["logvar"], np.full((2, model.data_dim), np.log(model.noise_var)), atol=1e-6)


def test_batch_bodies_carry_the_same_numbers_as_json_and_as_npy():
    pool = RowPool(16, 5, callers=1)
    picked = pool.pick(0, 64)
    from_json = np.asarray(orjson.loads(pool.json_body(picked, {"model": "m", "k": 3}))["x"], dtype=np.float32)
    from_npy = np.load(io.BytesIO(pool.npy_body(picked)))
    assert from_json.shape == from_npy.shape == (64, 5)
    np.testing.assert_array_equal(from_json, from_npy)
    np.testing.assert_array_equal(from_npy, pool.rows[picked])
