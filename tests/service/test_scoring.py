"""One scorer per model version (service.scoring): built once when the version loads, asked by every request,
chosen by VAE_LOGLIK_GRAPH, and the two-graph one, with the reason, for a model whose graphs cannot be fused."""

import numpy as np
import pytest

from service.errors import ModelRunFailed
from service.fusion import FusionError
from service.runtime import CPU
from service.scoring import FusedScorer, SeparateScorer
from tests.service.handmade import LinearGaussian


def test_each_version_gets_its_scorer_once_at_load_and_every_request_asks_that_one(repository, make_client,
                                                                                    monkeypatch):
    import service.runtime

    built, real_build = [], service.runtime.build_scorer

    def counting_build(runtime, *args):
        built.append(runtime.manifest.name)
        return real_build(runtime, *args)

    monkeypatch.setattr(service.runtime, "build_scorer", counting_build)
    client = make_client(repository)
    assert sorted(built) == ["bern1d", "linear", "linear"]  # one per loaded version
    service = client.app.state.service
    scorer = service.model("linear:2").runtime.scorer
    asked, real_estimate = [], scorer.estimate

    def recording_estimate(*args):
        asked.append(args[1:3])  # (k, seed)
        return real_estimate(*args)

    scorer.estimate = recording_estimate
    x = np.random.default_rng(0).standard_normal((2, 5)).tolist()
    for k, seed in ((10, 0), (20, 1), (30, 2)):
        assert client.post("/loglik", json={"model": "linear:2", "x": x, "k": k, "seed": seed}).status_code == 200
    assert client.post("/encode", json={"model": "linear:2", "x": x, "samples": 3, "seed": 0}).status_code == 200
    assert asked == [(10, 0), (20, 1), (30, 2)]
    assert len(built) == 3 and service.model("linear:2").runtime.scorer is scorer  # none built since the load


@pytest.mark.parametrize("graph, kind, description", [("fused", FusedScorer, "fused (fp32)"),
                                                       ("separate", SeparateScorer, "separate")])
def test_vae_loglik_graph_picks_the_scorer_and_get_models_names_it(repository, make_client, monkeypatch, graph, kind,
                                                                   description):
    monkeypatch.setenv("VAE_LOGLIK_GRAPH", graph)
    monkeypatch.setenv("VAE_WORK_ELEMENTS", "4096")
    client = make_client(repository)
    model = client.app.state.service.model("linear:1")
    scorer = model.runtime.scorer
    assert type(scorer) is kind and scorer.description == description and scorer.device == "cpu"
    assert scorer.work_elements == 4096  # on the CPU; VAE_CUDA_WORK_ELEMENTS is for the fused graph on CUDA
    assert model.cache_identity == f"{model.digest}/{graph}{'-fp32' if graph == 'fused' else ''}/{CPU}"
    assert client.get("/models/linear").json()["versions"][0]["loglik_graph"] == description


def test_a_fused_graph_that_fails_its_first_run_leaves_the_model_on_its_two_graphs_saying_why(tmp_path, make_client,
                                                                                             monkeypatch):
    def fail(self, x, *_):  # a fault the shipped graphs cannot produce: the fused graph fails where they run
        raise ModelRunFailed(f"model {self.label}: its fused scoring graph failed on a batch of {len(x)}")

    monkeypatch.setattr(FusedScorer, "estimate", fail)
    model = LinearGaussian()
    model.write(tmp_path)
    client = make_client(tmp_path, loglik_graph="fused")
    scorer = client.app.state.service.model("linear").runtime.scorer
    reason = "separate (the fused graph could not be built: model linear:1: its fused scoring graph failed on a " \
             "batch of 2)"
    assert type(scorer) is SeparateScorer and scorer.description == reason
    assert client.get("/models/linear").json()["versions"][0]["loglik_graph"] == reason
    x = np.random.default_rng(1).standard_normal((3, 5))
    body = client.post("/loglik", json={"x": x.tolist(), "k": 16}).json()
    np.testing.assert_allclose(body["loglik"], model.exact_loglik(x), atol=2e-4)


def test_a_failure_without_a_message_is_still_reported_by_its_kind(tmp_path, make_client, monkeypatch):
    def refuse(*_, **__):
        raise FusionError()

    monkeypatch.setattr("service.scoring.build_scoring_model", refuse)
    LinearGaussian().write(tmp_path)
    version = make_client(tmp_path).get("/models/linear").json()["versions"][0]
    assert version["ready"] and version["loglik_graph"] == "separate (the fused graph could not be built: FusionError)"
