"""POST and GET /loglik against exact answers, on hand-built ONNX models, on both scoring paths: the fused
graph (service.engine.fusion, float32 in ONNX Runtime, the CUDA path run here on the CPU) and the two graphs with
the likelihood in float64."""

import numpy as np
import pytest

from service.engine.sessions import ModelSessions
from tests.service.handmade import LinearGaussian, OneDimensionalBernoulli

GRAPHS = ["separate", "fused"]


@pytest.fixture(params=GRAPHS)
def client(request, repository, make_client):
    client = make_client(repository, loglik_graph=request.param)
    for model in client.get("/models").json()["models"]:  # each model really runs on the path asked for
        for version in model["versions"]:
            assert version["loglik_graph"] == {"fused": "fused (fp32)", "separate": "separate"}[request.param]
    return client


def test_exact_posterior_gives_the_closed_form_loglik(client):
    x = np.random.default_rng(1).standard_normal((6, 5)) * 2
    body = client.post("/loglik", json={"model": "linear:1", "x": x.tolist(), "k": 64}).json()
    exact = LinearGaussian().exact_loglik(x)
    assert body["model"] == "linear:1" and body["k"] == 64
    # Every importance weight equals p(x): the estimate is exact up to float32 graph arithmetic.
    np.testing.assert_allclose(body["loglik"], exact, atol=2e-4)
    np.testing.assert_allclose(body["elbo"], exact, atol=2e-4)
    assert max(body["stderr"]) < 1e-3


def test_poor_proposal_converges_within_its_standard_error(client):
    x = np.random.default_rng(2).standard_normal((4, 5))
    body = client.post("/loglik", json={"model": "linear:2", "x": x.tolist(), "k": 10000, "seed": 5}).json()
    error = np.abs(np.array(body["loglik"]) - LinearGaussian().exact_loglik(x))
    assert np.all(error < 4 * np.array(body["stderr"]) + 1e-3) and np.all(error < 0.05)
    assert np.all(np.array(body["elbo"]) < np.array(body["loglik"]))


def test_one_dimensional_bernoulli_against_quadrature(client):
    x = np.array([[[[1, 0, 1], [1, 0, 0]]], [[[0, 0, 0], [0, 0, 0]]], [[[1, 1, 1], [1, 1, 1]]]], dtype=float)
    body = client.post("/loglik", json={"model": "bern1d", "x": x.tolist(), "k": 10000}).json()
    error = np.abs(np.array(body["loglik"]) - OneDimensionalBernoulli().exact_loglik(x))
    assert np.all(error < 4 * np.array(body["stderr"]) + 1e-3) and np.all(error < 0.02)


def test_flat_points_and_get_agree_with_nested_post(client):
    point = [1, 0, 1, 1, 0, 0]
    nested = client.post("/loglik", json={"model": "bern1d", "x": [[[point[:3], point[3:]]]], "k": 300}).json()
    flat = client.post("/loglik", json={"model": "bern1d", "x": [point], "k": 300}).json()
    single = client.get("/loglik", params={"model": "bern1d", "x": "1,0,1,1,0,0", "k": 300}).json()
    assert nested == flat
    assert flat["method"] == "importance" and flat["k"] == 300
    assert single == {"model": "bern1d:1", "method": "importance", "k": 300, "loglik": flat["loglik"][0], "stderr": flat["stderr"][0],
                      "elbo": flat["elbo"][0]}


@pytest.mark.parametrize("graph", GRAPHS)
def test_a_point_scores_the_same_alone_anywhere_in_a_batch_and_however_the_work_is_sliced(repository, make_client,
                                                                                          graph):
    x = np.random.default_rng(3).standard_normal((7, 5))
    wide = make_client(repository, loglik_graph=graph)
    narrow = make_client(repository, work_elements=1024, loglik_graph=graph)  # slices of at most ~200 samples
    request = {"model": "linear:2", "x": x.tolist(), "k": 999, "seed": 11}
    batch = wide.post("/loglik", json=request).json()
    sliced = narrow.post("/loglik", json=request).json()
    # The fused graph sums each slice of K in float32, so other slices round differently; the batch does not.
    np.testing.assert_allclose(sliced["loglik"], batch["loglik"], rtol=1e-12 if graph == "separate" else 1e-6)
    alone = wide.post("/loglik", json={**request, "x": x[4:5].tolist()}).json()
    assert np.isclose(alone["loglik"][0], batch["loglik"][4], rtol=1e-12)
    other_seed = wide.post("/loglik", json={**request, "seed": 12}).json()
    assert other_seed["loglik"] != batch["loglik"]


def test_memory_stays_bounded_for_large_k(repository, make_client, monkeypatch):
    client = make_client(repository, work_elements=2048, loglik_graph="separate")
    real_decode, rows_seen = ModelSessions.decode, []

    def spy(self, z, x=None):  # the real decoder run, recording how many rows each holds
        rows_seen.append(len(z))
        return real_decode(self, z, x)

    monkeypatch.setattr(ModelSessions, "decode", spy)
    x = np.zeros((3, 5)).tolist()
    body = client.post("/loglik", json={"model": "linear:2", "x": x, "k": 5000}).json()
    assert len(body["loglik"]) == 3
    assert sum(rows_seen) == 3 * 5000 and max(rows_seen) <= 2048 // 5


@pytest.mark.parametrize("k", [1, 7])
def test_small_k_is_still_a_valid_estimate(client, k):
    body = client.post("/loglik", json={"model": "linear:1", "x": [[0.0] * 5], "k": k}).json()
    assert np.isclose(body["loglik"][0], LinearGaussian().exact_loglik(np.zeros((1, 5)))[()], atol=2e-4)


def test_concurrent_requests_share_the_compute_slots(repository, make_client, monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    client = make_client(repository, compute_slots=2, inline_work_elements=0, loglik_graph="separate",
                         batching="off")  # each request its own computation
    real_decode, lock, state = ModelSessions.decode, threading.Lock(), {"now": 0, "most": 0}

    def counting(self, z, x=None):  # the real decoder run, recording how many computations overlap
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(0.02)  # long enough for the requests to overlap
            return real_decode(self, z, x)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(ModelSessions, "decode", counting)
    requests = [{"model": "linear:2", "x": [[float(i)] * 5], "k": 3000} for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: client.post("/loglik", json=body), requests))
    assert all(a.status_code == 200 for a in answers)
    assert state["most"] == 2


def test_the_standard_error_is_calibrated(client):
    """Over 200 independent seeds, |estimate - exact| < 2 stderr about 95% of the time (binomial bounds)."""
    x = np.random.default_rng(4).standard_normal((1, 5))
    exact = LinearGaussian().exact_loglik(x)
    errors, stderrs = [], []
    for seed in range(200):
        body = client.post("/loglik", json={"model": "linear:2", "x": x.tolist(), "k": 200, "seed": seed}).json()
        errors.append(body["loglik"][0] - exact)
        stderrs.append(body["stderr"][0])
    covered = np.mean(np.abs(errors) < 2 * np.array(stderrs))
    assert 0.88 <= covered <= 0.995, covered
    assert 0.8 < np.std(errors) / np.mean(stderrs) < 1.25  # the reported spread is the real spread
    assert abs(np.mean(errors)) < 3 * np.mean(stderrs) / np.sqrt(200) + 0.02  # bias ~ var / 2, small here
