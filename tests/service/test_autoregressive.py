"""Autoregressive decoders over HTTP (shared/CONTRACT.md, likelihood.autoregressive), on hand-built MADE-style
models checked against float64 references: quadrature over the 1-D latent for log p(x) and for the exact
distribution of x, and a float64 sampler fed the same noise."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from modelrepo import load_manifest
from modelrepo.likelihood import MixtureOfGaussians, generator, likelihood_for
from service.dataplane.budget import WorkBudget, current_budget
from service.engine.options import EngineOptions
from service.engine.sessions import CPU, ModelSessions
from service.errors import RequestCancelled
from tests.service.handmade import (
    LinearGaussian,
    SmallAutoregressive,
    affine_graph,
    say_autoregressive,
    write_model,
)

MIXTURE = {"logits": [0.3, -0.2], "mean": [[-1.0], [0.8]], "logvar": [[-0.5], [0.2]]}
OUTCOMES = np.array(list(itertools.product([0.0, 1.0], repeat=3)))  # the 8 values of 3 binary positions, (8, 3)


@pytest.fixture
def repository(tmp_path):
    """ar:1 bernoulli over [3]; ar-grid:1 bernoulli over [2, 2] (C order); ar-gauss:1 gaussian, MoG prior;
    ar-big:1 bernoulli over [256] (long sampling); linear:1 plain, for the service's default model."""
    SmallAutoregressive().write(tmp_path, "ar")
    SmallAutoregressive(data_shape=(2, 2), seed=8).write(tmp_path, "ar-grid")
    SmallAutoregressive("gaussian", data_shape=(3,), mixture=MIXTURE, seed=6).write(tmp_path, "ar-gauss")
    SmallAutoregressive(data_shape=(256,), latent_dim=2, seed=9).write(tmp_path, "ar-big")
    LinearGaussian().write(tmp_path, "linear")
    return tmp_path


def sessions_of(folder):
    """The version's two graphs in ONNX Runtime, as the engine runs them."""
    manifest = load_manifest(folder)
    graphs = (Path(folder, manifest.encoder).read_bytes(), Path(folder, manifest.decoder).read_bytes())
    return ModelSessions(manifest, *graphs, EngineOptions([CPU])), likelihood_for(manifest.likelihood.type)


@pytest.mark.parametrize("name, model", [("ar", SmallAutoregressive()),
                                         ("ar-grid", SmallAutoregressive(data_shape=(2, 2), seed=8)),
                                         ("ar-gauss", SmallAutoregressive("gaussian", mixture=MIXTURE, seed=6))])
def test_the_teacher_forced_pass_is_the_product_of_the_sequential_conditionals(repository, name, model):
    sessions, likelihood = sessions_of(repository / name / "1")
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 1)).astype(np.float32)
    x = (rng.uniform(size=(5, *model.data_shape)) < 0.5).astype(np.float32) if model.likelihood == "bernoulli" \
        else rng.standard_normal((5, *model.data_shape)).astype(np.float32)
    one_pass = likelihood.log_density(x.reshape(5, -1), {k: v.reshape(5, -1) for k, v in
                                                         sessions.decode(z, x).items()})
    # p(x_d | z, x_<d) from a pass that sees only x_<d (later positions zeroed), one position at a time
    flat, sequential = x.reshape(5, -1), np.zeros(5)
    for d in range(flat.shape[1]):
        seen = np.where(np.arange(flat.shape[1]) < d, flat, 0).astype(np.float32)
        params = sessions.decode(z, seen.reshape(x.shape))
        at_d = {k: v.reshape(5, -1)[:, d : d + 1] for k, v in params.items()}
        sequential += likelihood.log_density(flat[:, d : d + 1], at_d)
    np.testing.assert_allclose(one_pass, sequential, rtol=1e-6)
    np.testing.assert_allclose(one_pass, model.log_conditional(z, x), rtol=1e-5, atol=1e-5)  # the float64 model


@pytest.mark.parametrize("graph", ["fused", "separate"])
@pytest.mark.parametrize("name, model, x", [
    ("ar", SmallAutoregressive(), OUTCOMES),
    ("ar-gauss", SmallAutoregressive("gaussian", mixture=MIXTURE, seed=6),
     None),  # points the model draws itself: a fixed wide proposal serves them
])
def test_loglik_is_the_quadrature_within_its_standard_error(repository, make_client, graph, name, model, x):
    client = make_client(repository, loglik_graph=graph, work_elements=4096)  # several slices per point
    version = client.get(f"/models/{name}").json()["versions"][0]
    assert version["autoregressive"] is True
    assert version["loglik_graph"] == ("separate (autoregressive decoder, one teacher-forced pass per slice; the "
                                       "fused graph serves decoders of z alone)")
    if x is None:
        rng = np.random.default_rng(3)
        x = model.draw(MixtureOfGaussians(**MIXTURE).sample(rng, 6), rng.standard_normal((6, 3)))
    body = client.post("/loglik", json={"model": name, "x": x.tolist(), "k": 10000, "seed": 1}).json()
    exact = model.exact_loglik(x)
    error = np.abs(np.array(body["loglik"]) - exact)
    assert body["method"] == "importance" and np.all(np.array(body["stderr"]) > 0)
    assert np.all(error < 4 * np.array(body["stderr"]) + 1e-5), (error, body["stderr"])
    # The x-dependence is really used: the same weights without it give other numbers
    wrong = SmallAutoregressive(model.likelihood, mixture=model.mixture, seed=model_seed(name), ignore_x=True)
    assert np.max(np.abs(np.array(body["loglik"]) - wrong.exact_loglik(x))) > 0.1


def model_seed(name):
    return {"ar": 5, "ar-gauss": 6}[name]


def exact_probabilities(model):
    probabilities = np.exp(model.exact_loglik(OUTCOMES))
    assert abs(probabilities.sum() - 1) < 1e-9
    return probabilities


def test_samples_follow_the_exact_distribution_and_a_wrong_one_is_rejected(repository, make_client):
    client = make_client(repository, max_sample_n=20000)
    body = client.post("/sample", json={"model": "ar", "n": 20000, "seed": 11, "mode": "sample"}).json()
    x = np.array(body["x"])
    assert x.shape == (20000, 3) and set(np.unique(x)) <= {0.0, 1.0} and np.array(body["z"]).shape == (20000, 1)
    counts = np.bincount((x @ [4, 2, 1]).astype(int), minlength=8)  # OUTCOMES are in this binary order
    assert stats.chisquare(counts, 20000 * exact_probabilities(SmallAutoregressive())).pvalue > 1e-3
    wrong = exact_probabilities(SmallAutoregressive(ignore_x=True))  # the same model, the x-dependence dropped
    assert stats.chisquare(counts, 20000 * wrong).pvalue < 1e-6
    # The parameters returned are those of p(x_d | z, x_<d) at the drawn x
    logits = SmallAutoregressive().conditionals(np.array(body["z"]), x)["logits"]
    np.testing.assert_allclose(body["logits"], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(body["mean"], 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
    assert "logvar" not in body


def test_decode_with_a_seed_is_the_reference_sampler_fed_the_same_noise_and_is_cached(repository, make_client):
    client = make_client(repository)
    z = np.random.default_rng(2).standard_normal((50, 1))
    request = {"model": "ar-grid", "z": z.tolist(), "seed": 4}
    first = client.post("/decode", json=request).json()
    model = SmallAutoregressive(data_shape=(2, 2), seed=8)
    expected = model.draw(z.astype(np.float32), generator(4).uniform(size=(50, 4)))  # noise (N, D), C order
    np.testing.assert_array_equal(np.array(first["x"]).reshape(50, 4), expected)
    assert np.array(first["x"]).shape == (50, 2, 2) and len(np.unique(expected, axis=0)) > 4
    np.testing.assert_allclose(np.array(first["logits"]).reshape(50, 4),
                               model.conditionals(z.astype(np.float32), expected)["logits"], rtol=1e-5, atol=1e-5)
    hits = metric_total(client, "vae_cache_hits_total")
    assert client.post("/decode", json=request).json() == first  # cached, and the same numbers
    assert metric_total(client, "vae_cache_hits_total") == hits + 1
    fresh = [client.post("/decode", json={"model": "ar-grid", "z": z.tolist()}).json() for _ in range(2)]
    assert fresh[0]["x"] != fresh[1]["x"]  # no seed: fresh draws, never answered from the cache
    assert metric_total(client, "vae_cache_hits_total") == hits + 1


def test_gaussian_draws_are_the_reference_sampler_and_sample_is_deterministic(repository, make_client):
    client = make_client(repository)
    request = {"model": "ar-gauss", "n": 40, "seed": 9, "mode": "sample", "temperature": 0.7}
    body = client.post("/sample", json=request).json()
    rng = generator(9)  # one generator: z from the mixture prior, then the noise of every point and position
    model = SmallAutoregressive("gaussian", mixture=MIXTURE, seed=6)
    z = MixtureOfGaussians(**MIXTURE).sample(rng, 40, 0.7).astype(np.float32)
    np.testing.assert_array_equal(np.array(body["z"], np.float32), z)
    expected = model.draw(z, rng.standard_normal((40, 3)))
    np.testing.assert_allclose(body["x"], expected, rtol=1e-5, atol=1e-5)
    params = model.conditionals(z, np.array(body["x"]))
    np.testing.assert_allclose(body["mean"], params["mean"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(body["logvar"], params["logvar"], rtol=1e-5, atol=1e-5)
    recomputed = make_client(repository, cache_min_work=10**9).post("/sample", json=request).json()  # no cache
    assert recomputed == body


def test_mode_mean_is_refused_with_the_fix(repository, make_client):
    client = make_client(repository)
    r = client.post("/sample", json={"model": "ar", "n": 2, "seed": 0})  # mode "mean" is the default
    assert r.status_code == 422
    assert r.json()["detail"] == ('mode: "mean" asks for E[x given z], which has no closed form for model ar:1, '
                                  'whose decoder is autoregressive; send "mode": "sample" to draw x given z')


def test_plain_models_decode_as_before_and_ignore_a_seed(repository, make_client):
    client = make_client(repository)
    z = [[0.1, -0.2, 0.3]]
    plain = client.post("/decode", json={"model": "linear", "z": z}).json()
    assert set(plain) == {"model", "mean", "logvar"}
    assert client.post("/decode", json={"model": "linear", "z": z, "seed": 3}).json() == plain
    assert client.get("/models/linear").json()["versions"][0]["autoregressive"] is False


def test_a_decoder_that_disagrees_with_its_manifest_fails_alone_with_the_fix(repository, make_client):
    model = SmallAutoregressive()
    plain_decoder = affine_graph("z", (1,), {"logits": (model.a, model.c, (3,))})
    say_autoregressive(write_model(repository, "no-x", 1, (3,), 1, "bernoulli", model.encoder, plain_decoder))
    write_model(repository, "unsaid", 1, (3,), 1, "bernoulli", model.encoder, model.decoder)
    client = make_client(repository)
    errors = {name: client.get(f"/models/{name}").json()["versions"][0]["error"] for name in ("no-x", "unsaid")}
    assert ("manifest.json says likelihood.autoregressive: true, so the decoder must take 'x' [batch, *[3]] beside "
            "'z': add that input to the graph") in errors["no-x"]
    assert ('a decoder that takes x is autoregressive, but manifest.json does not say so: set "likelihood": '
            '{"type": "bernoulli", "autoregressive": true}') in errors["unsaid"]
    assert client.post("/sample", json={"model": "ar", "n": 3, "mode": "sample"}).status_code == 200


def test_categorical_latents_with_an_autoregressive_decoder_are_refused_at_load(repository, make_client):
    model = SmallAutoregressive(data_shape=(3,), latent_dim=4)
    import onnx

    decoder = onnx.load_from_string(model.decoder.SerializeToString())
    decoder.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 2  # z [batch, 2, 2]
    decoder.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2
    say_autoregressive(write_model(
        repository, "cat-ar", 1, (3,), 4, "bernoulli",
        affine_graph("x", (3,), {"logits": (np.zeros((3, 4)), np.zeros(4), (2, 2))}), decoder, prior=None,
        latent={"type": "categorical", "groups": 2, "categories": 2}))
    client = make_client(repository)
    error = client.get("/models/cat-ar").json()["versions"][0]["error"]
    assert "likelihood.autoregressive with categorical latents is not served" in error


def test_a_long_sampling_request_stops_between_positions_when_cancelled(repository, make_client, monkeypatch):
    client = make_client(repository, max_sample_n=4096)
    dataplane = client.app.state.dataplane
    passes, decode = [], ModelSessions.decode

    def counting_decode(self, z, x=None):  # the real decoder; injects the fault: the client leaves during pass 3
        passes.append(len(z))
        if len(passes) == 3:
            budget.cancelled.set()
        return decode(self, z, x)

    budget = WorkBudget(timeout_s=600.0)
    monkeypatch.setattr(ModelSessions, "decode", counting_decode)

    async def request():
        current_budget.set(budget)
        return await dataplane.sample("ar-big", 4096, 0, 1.0, "sample")

    with pytest.raises(RequestCancelled):
        client.portal.call(request)
    assert passes == [4096] * 3  # of the 257 passes it needed


def test_the_deadline_stops_a_long_sampling_request(repository, make_client):
    client = make_client(repository, max_sample_n=4096)
    r = client.post("/sample", headers={"X-Request-Timeout": "0.05"},
                    json={"model": "ar-big", "n": 4096, "seed": 0, "mode": "sample"})  # 257 passes of 4096 x 256
    assert r.status_code == 503 and "deadline of 0.05 s" in r.json()["detail"]


def metric_total(client, name):
    return sum(float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
               if line.startswith(name + "{") and 'operation="decode"' in line)


def test_decode_takes_its_seed_in_the_query_string_with_an_npy_body(repository, make_client):
    import io

    client = make_client(repository)
    z = np.random.default_rng(5).standard_normal((8, 1)).astype(np.float32)
    body = io.BytesIO()
    np.save(body, z)
    binary = client.post("/decode", content=body.getvalue(), params={"model": "ar", "seed": 6},
                         headers={"content-type": "application/x-npy"})
    assert binary.status_code == 200, binary.text
    assert binary.json() == client.post("/decode", json={"model": "ar", "z": z.tolist(), "seed": 6}).json()
    expected = SmallAutoregressive().draw(z, generator(6).uniform(size=(8, 3)))
    np.testing.assert_array_equal(binary.json()["x"], expected)
