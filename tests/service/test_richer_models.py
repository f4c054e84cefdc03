"""Mixture-of-Gaussians priors and categorical latents over HTTP (shared/CONTRACT.md, "Richer models"), on
hand-built models checked against closed forms and brute-force float64 enumeration."""

import io
import json

import numpy as np
import pytest
from scipy import special, stats

from tests.service.handmade import LinearGaussian, LinearGaussianMixture, SmallCategorical

PRIOR_LOGITS = [[1.0, -0.5, 0.0], [-1.0, 0.5, 2.0]]
BINARY_POINTS = np.array([[0, 0, 0, 0], [1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 0], [0.5, 0.25, 1, 0]])


@pytest.fixture
def repository(tmp_path):
    """mog:1 (linear-Gaussian, MoG prior), cat:1 (uniform prior: no prior key), cat:2 (categorical prior),
    linear:1 (standard normal)."""
    LinearGaussianMixture().write(tmp_path)
    SmallCategorical().write(tmp_path, "cat", 1)
    SmallCategorical(PRIOR_LOGITS).write(tmp_path, "cat", 2)
    LinearGaussian().write(tmp_path)
    return tmp_path


@pytest.mark.parametrize("graph", ["fused", "separate"])
def test_mixture_prior_loglik_is_the_closed_form_within_its_standard_error(repository, make_client, graph):
    client = make_client(repository, loglik_graph=graph)
    assert client.get("/models/mog").json()["versions"][0]["loglik_graph"] == {"fused": "fused (fp32)"}.get(graph, graph)
    x = np.random.default_rng(2).standard_normal((4, 5)) * 1.5
    body = client.post("/loglik", json={"model": "mog", "x": x.tolist(), "k": 5000, "seed": 3}).json()
    error = np.abs(np.array(body["loglik"]) - LinearGaussianMixture().exact_loglik(x))
    assert body["method"] == "importance" and body["k"] == 5000
    assert np.all(error < 4 * np.array(body["stderr"]) + 1e-4) and np.all(error < 0.05), (error, body["stderr"])
    # Under the standard normal the same graphs give another number: the prior really is the mixture.
    standard = LinearGaussian(proposal_widen=3.0).exact_loglik(x)
    assert np.all(np.abs(np.array(body["loglik"]) - standard) > 0.1)


def test_the_fused_graph_and_the_two_graphs_agree_on_a_mixture_prior(repository, make_client):
    x = np.random.default_rng(4).standard_normal((6, 5)).tolist()
    request = {"model": "mog", "x": x, "k": 300, "seed": 1}
    fused = make_client(repository, loglik_graph="fused").post("/loglik", json=request).json()
    separate = make_client(repository, loglik_graph="separate").post("/loglik", json=request).json()
    for field in ("loglik", "elbo"):  # the same draws: float32 in the graph against float64 on the host
        np.testing.assert_allclose(fused[field], separate[field], atol=2e-4)


def test_categorical_latents_fall_back_from_the_fused_graph_and_say_why(repository, make_client):
    client = make_client(repository, loglik_graph="fused")
    described = {name: client.get(f"/models/{name}").json()["versions"] for name in ("cat", "linear")}
    assert described["linear"][0]["loglik_graph"] == "fused (fp32)"
    assert described["cat"][0]["loglik_graph"] == ("separate (categorical latents, exact over its 9 configurations; "
                                                   "the fused graph serves Gaussian latents only)")
    assert described["cat"][1]["manifest"]["prior"] == {"type": "categorical", "logits": PRIOR_LOGITS}


@pytest.mark.parametrize("model", ["cat:1", "cat:2"])
def test_categorical_loglik_is_the_exact_sum_over_every_configuration(repository, make_client, model):
    client = make_client(repository, work_elements=1024)  # slices of the 9 configurations: 1024 // 6 points each
    reference = SmallCategorical(PRIOR_LOGITS if model == "cat:2" else None)
    loglik, elbo = reference.exact(BINARY_POINTS)
    body = client.post("/loglik", json={"model": model, "x": BINARY_POINTS.tolist(), "k": 50, "seed": 1}).json()
    assert body["method"] == "exact" and body["k"] == 9 and body["stderr"] == [0.0] * len(BINARY_POINTS)
    # Exact up to the graphs' float32 arithmetic
    np.testing.assert_allclose(body["loglik"], loglik, rtol=1e-6)
    np.testing.assert_allclose(body["elbo"], elbo, rtol=1e-6)
    assert np.all(np.array(body["elbo"]) <= np.array(body["loglik"]))
    # k and seed do not change an exact answer, and one point alone scores as in the batch
    other = client.post("/loglik", json={"model": model, "x": BINARY_POINTS.tolist(), "k": 7, "seed": 9}).json()
    assert other == body
    single = client.get("/loglik", params={"model": model, "x": "1,0,1,1"}).json()
    assert single == {"model": body["model"], "method": "exact", "k": 9, "loglik": body["loglik"][1], "stderr": 0.0,
                      "elbo": body["elbo"][1]}


def test_above_the_enumeration_limit_categorical_loglik_is_importance_sampled(repository, make_client):
    client = make_client(repository, enumeration_limit=8)  # 9 configurations: one too many
    loglik, elbo = SmallCategorical(PRIOR_LOGITS).exact(BINARY_POINTS)
    body = client.post("/loglik", json={"model": "cat:2", "x": BINARY_POINTS.tolist(), "k": 4000, "seed": 2}).json()
    assert body["method"] == "importance" and body["k"] == 4000
    error = np.abs(np.array(body["loglik"]) - loglik)
    assert np.all(error < 4 * np.array(body["stderr"]) + 1e-6) and np.all(np.array(body["stderr"]) > 0)
    assert np.all(np.abs(np.array(body["elbo"]) - elbo) < 0.1)  # the mean log-weight estimates the exact ELBO
    again = client.post("/loglik", json={"model": "cat:2", "x": BINARY_POINTS[1:2].tolist(), "k": 4000, "seed": 2})
    assert again.json()["loglik"][0] == pytest.approx(body["loglik"][1], rel=1e-12)  # a point alone: the same draws
    assert "VAE_ENUMERATION_LIMIT=8" in client.get("/models/cat").json()["versions"][1]["loglik_graph"]


def test_exact_sums_count_their_terms_against_the_sample_limit(repository, make_client):
    client = make_client(repository, max_loglik_samples=20)
    answer = client.post("/loglik", json={"model": "cat", "x": BINARY_POINTS[:3].tolist(), "k": 1})
    assert answer.status_code == 422
    assert answer.json()["detail"] == ("points x 9 configurations (summed exactly: send fewer points): 27 is over the "
                                       "limit of 20 (VAE_MAX_LOGLIK_SAMPLES)")


def test_encode_returns_the_encoders_logits_and_one_hot_draws_from_q(repository, make_client):
    client = make_client(repository)
    reference, x = SmallCategorical(PRIOR_LOGITS), BINARY_POINTS[:2]
    body = client.post("/encode", json={"model": "cat:2", "x": x.tolist(), "samples": 1000, "seed": 4}).json()
    assert set(body) == {"model", "logits", "z"}
    logits, z = np.array(body["logits"]), np.array(body["z"])
    np.testing.assert_allclose(logits, reference.encode(x), rtol=1e-5, atol=1e-5)
    assert z.shape == (2, 1000, 2, 3) and np.all(z.sum(-1) == 1) and set(np.unique(z)) == {0.0, 1.0}
    q = special.softmax(logits.astype(np.float64), axis=-1)  # (N, G, C)
    for point in range(2):
        for group in range(2):
            counts = z[point, :, group].sum(0)
            assert stats.chisquare(counts, 1000 * q[point, group]).pvalue > 1e-3
    # The same logits as .npy arrays in an .npz answer
    npz = client.post("/encode", json={"model": "cat:2", "x": x.tolist()}, headers={"accept": "application/x-npz"})
    np.testing.assert_array_equal(np.load(io.BytesIO(npz.content))["logits"], np.array(logits, np.float32))


def test_decode_takes_one_hot_and_relaxed_z_nested_or_flat(repository, make_client):
    client = make_client(repository)
    reference = SmallCategorical()
    z = np.array([[[1, 0, 0], [0, 0, 1]], [[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]])  # one-hot, then relaxed
    body = client.post("/decode", json={"model": "cat:1", "z": z.tolist()}).json()
    logits = z.reshape(2, 6) @ reference.decoder_weight + reference.decoder_bias
    np.testing.assert_allclose(body["logits"], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(body["mean"], special.expit(logits), rtol=1e-5)
    assert client.post("/decode", json={"model": "cat:1", "z": z.reshape(2, 6).tolist()}).json() == body
    wrong = client.post("/decode", json={"model": "cat:1", "z": [[1, 0, 0, 1]]})
    assert wrong.status_code == 422 and "[2, 3] (or 6 numbers flat)" in wrong.json()["detail"]


def test_sample_draws_the_categorical_prior_at_its_temperature(repository, make_client):
    client = make_client(repository)
    log_probs = special.log_softmax(np.array(PRIOR_LOGITS), axis=-1)
    for temperature in (1.0, 2.0):
        counts = np.zeros((2, 3))
        for seed in range(4):
            body = client.post("/sample", json={"model": "cat:2", "n": 1000, "seed": seed,
                                                "temperature": temperature}).json()
            z = np.array(body["z"])
            assert z.shape == (1000, 2, 3) and np.all(z.sum(-1) == 1)
            counts += z.sum(0)
        expected = special.softmax(log_probs / temperature, axis=-1) * 4000  # temperature divides the logits
        for group in range(2):
            assert stats.chisquare(counts[group], expected[group]).pvalue > 1e-3
    coldest = np.array(client.post("/sample", json={"model": "cat:2", "n": 50, "seed": 0, "temperature": 0.0}).json()["z"])
    assert np.all(coldest.argmax(-1) == np.argmax(PRIOR_LOGITS, axis=-1))
    uniform = np.array(client.post("/sample", json={"model": "cat:1", "n": 1000, "seed": 1}).json()["z"]).sum(0)
    for group in range(2):
        assert stats.chisquare(uniform[group]).pvalue > 1e-3


def test_sample_draws_the_mixture_components_by_their_weights(tmp_path, make_client):
    logits = [1.0, 0.0, -0.5, 0.3]
    means = np.array([[-6.0, 0, 0], [6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]])
    logvar = np.full((4, 3), np.log(0.25))
    LinearGaussianMixture(logits, means, logvar).write(tmp_path)
    client = make_client(tmp_path, default_model="mog")
    counts = np.zeros(4)
    spread = []
    for seed in range(3):
        z = np.array(client.post("/sample", json={"n": 1000, "seed": seed, "temperature": 0.5}).json()["z"])
        component = np.argmin(((z[:, None] - means) ** 2).sum(-1), axis=1)  # components 6 apart, sd 0.25
        counts += np.bincount(component, minlength=4)
        spread.append(z - means[component])
    assert stats.chisquare(counts, special.softmax(logits) * 3000).pvalue > 1e-3
    # temperature scales each component's standard deviation: 0.5 * 0.5
    assert np.std(np.concatenate(spread)) == pytest.approx(0.25, rel=0.05)


def test_categorical_answers_are_cached_and_npy_bodies_work(repository, make_client):
    client = make_client(repository)
    buffer = io.BytesIO()
    np.save(buffer, BINARY_POINTS.astype(np.float32))
    as_npy = client.post("/loglik?model=cat:2", content=buffer.getvalue(),
                         headers={"content-type": "application/x-npy"}).json()
    as_json = client.post("/loglik", json={"model": "cat:2", "x": BINARY_POINTS.tolist()}).json()
    assert as_npy == as_json
    metrics = client.get("/metrics").text
    hits = [line for line in metrics.splitlines() if line.startswith("vae_cache_hits_total") and "loglik" in line]
    assert hits and float(hits[0].split()[-1]) >= 1


@pytest.mark.parametrize("change, message", [
    ({"latent_dim": 5}, "latent_dim: is 5, but a categorical latent of 2 groups x 3 categories has 6 values"),
    ({"prior": {"type": "standard_normal"}}, "prior: type 'standard_normal' does not go with a categorical latent"),
    ({"prior": {"type": "categorical", "logits": [[0, 0, 0]]}}, "prior.logits: is [1][3], expected [2][3]"),
])
def test_a_bad_manifest_keeps_its_model_out_and_the_others_serve(repository, make_client, change, message):
    manifest_path = repository / "cat" / "2" / "manifest.json"
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), **change}))
    client = make_client(repository)
    version = {v["version"]: v for v in client.get("/models/cat").json()["versions"]}
    assert version["2"]["ready"] is False and message in version["2"]["error"]
    assert client.post("/loglik", json={"model": "cat:2", "x": [[0, 0, 0, 0]]}).status_code == 503
    assert client.post("/loglik", json={"model": "cat:1", "x": [[0, 0, 0, 0]]}).json()["method"] == "exact"
    assert client.get("/health/ready").status_code == 200


def test_a_categorical_decoder_that_takes_flat_z_is_refused_at_load(tmp_path, make_client):
    from tests.service.handmade import affine_graph

    model = SmallCategorical()
    model.decoder = affine_graph("z", (6,), {"logits": (model.decoder_weight, model.decoder_bias, (4,))})
    model.write(tmp_path, "cat", 1)
    LinearGaussian().write(tmp_path)
    client = make_client(tmp_path)
    error = client.get("/models/cat").json()["versions"][0]["error"]
    assert error == "cat/1: decoder.onnx input 'z': rank 2, expected [batch, *[2, 3]]"
    assert client.get("/health/ready").status_code == 200
