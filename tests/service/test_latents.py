"""POST /encode and POST /decode (service/http/routes/latents.py), on hand-built models with known answers."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

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


def test_a_model_that_breaks_at_run_time_answers_with_a_clear_error(repository, make_client):
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
