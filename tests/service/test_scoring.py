"""Each version's one scorer (service.engine.choice): chosen when the version loads, asked by every request,
picked by VAE_LOGLIK_GRAPH, named by GET /models, part of what the cache keys on; the two-graph scorer, with the
reason, for a model whose graphs cannot be fused."""

import numpy as np
import onnxruntime as ort
import pytest

from service.engine.fusion import FusionError
from service.engine.scorers import FusedScorer
from service.errors import ModelRunFailed
from tests.service.handmade import LinearGaussian
from tests.service.test_cache import REDIS_URL, counter, shared_redis  # noqa: F401 - the fixture

X = np.random.default_rng(0).standard_normal((2, 5))


def test_sessions_are_built_when_versions_load_and_never_by_a_request(repository, make_client, monkeypatch):
    built = []

    class CountedSession(ort.InferenceSession):  # the real ONNX Runtime session, counted
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", CountedSession)
    client = make_client(repository, loglik_graph="fused", device="cpu")  # no probe of CUDA
    at_load = len(built)
    assert at_load == 3 * 3  # each of the three versions: encoder, decoder, fused scoring graph
    x = X.tolist()
    for k, seed in ((10, 0), (20, 1), (30, 2)):
        assert client.post("/loglik", json={"model": "linear:2", "x": x, "k": k, "seed": seed}).status_code == 200
    assert client.post("/encode", json={"model": "linear:2", "x": x, "samples": 3, "seed": 0}).status_code == 200
    assert client.post("/sample", json={"model": "linear:2", "n": 3, "seed": 0}).status_code == 200
    assert len(built) == at_load


@pytest.mark.parametrize("graph, description", [("fused", "fused (fp32)"), ("separate", "separate")])
def test_vae_loglik_graph_picks_the_scorer_and_get_models_names_it(repository, make_client, graph, description):
    client = make_client(repository, loglik_graph=graph)
    version = client.get("/models/linear").json()["versions"][0]
    assert (version["loglik_graph"], version["tier"], version["precision"]) == (description, "onnxruntime", "fp32")
    x = np.random.default_rng(1).standard_normal((3, 5))
    body = client.post("/loglik", json={"model": "linear:1", "x": x.tolist(), "k": 16}).json()
    np.testing.assert_allclose(body["loglik"], LinearGaussian().exact_loglik(x), atol=2e-4)


def test_a_changed_scoring_path_changes_the_cache_key(repository, make_client, shared_redis):  # noqa: F811
    request = {"model": "linear:2", "x": X.tolist(), "k": 400, "seed": 3}
    fused = make_client(repository, redis_url=REDIS_URL, loglik_graph="fused")
    answer = fused.post("/loglik", json=request).json()
    separate = make_client(repository, redis_url=REDIS_URL, loglik_graph="separate")
    other = separate.post("/loglik", json=request).json()
    assert counter(separate, "vae_cache_hits", "loglik") == 0  # the same files, other numerics: not its entry
    np.testing.assert_allclose(other["loglik"], answer["loglik"], rtol=1e-5)  # two paths to the same estimate
    assert len(shared_redis.keys("*:loglik:*")) == 2
    same_path = make_client(repository, redis_url=REDIS_URL, loglik_graph="fused")
    assert same_path.post("/loglik", json=request).json() == answer
    assert counter(same_path, "vae_cache_hits", "loglik") == 1  # another instance computing alike shares it


def test_a_fused_graph_that_fails_its_first_run_leaves_the_model_on_its_two_graphs_saying_why(tmp_path, make_client,
                                                                                             monkeypatch):
    def fail(self, x, *_):  # a fault the shipped graphs cannot produce: the fused graph fails where they run
        raise ModelRunFailed(f"model {self.label}: its fused scoring graph failed on a batch of {len(x)}")

    monkeypatch.setattr(FusedScorer, "estimate", fail)
    model = LinearGaussian()
    model.write(tmp_path)
    client = make_client(tmp_path, loglik_graph="fused")
    reason = "separate (the fused graph could not be built: model linear:1: its fused scoring graph failed on a " \
             "batch of 2)"
    assert client.get("/models/linear").json()["versions"][0]["loglik_graph"] == reason
    x = np.random.default_rng(1).standard_normal((3, 5))
    body = client.post("/loglik", json={"x": x.tolist(), "k": 16}).json()
    np.testing.assert_allclose(body["loglik"], model.exact_loglik(x), atol=2e-4)


def test_a_failure_without_a_message_is_still_reported_by_its_kind(tmp_path, make_client, monkeypatch):
    def refuse(*_, **__):
        raise FusionError()

    monkeypatch.setattr("service.engine.choice.build_scoring_model", refuse)
    LinearGaussian().write(tmp_path)
    version = make_client(tmp_path).get("/models/linear").json()["versions"][0]
    assert version["ready"] and version["loglik_graph"] == "separate (the fused graph could not be built: FusionError)"
