"""Dynamic batching: concurrent requests for the same run are coalesced, split back, and answer exactly
what they answer alone. Requests are issued concurrently on the app's own event loop (TestClient's portal)."""

import asyncio

import numpy as np
import pytest

from service.batching import DynamicBatcher
from service.errors import ModelRunFailed


def concurrently(client, *calls):
    """Run the coroutine functions in `calls` at once on the app's event loop; their results in order."""

    async def gather():
        return await asyncio.gather(*(call() for call in calls), return_exceptions=True)

    return client.portal.call(gather)


def runs_of(service, operation):
    """How many coalesced runs an operation made, and how many requests they answered."""
    samples = {s.name: s.value for m in service.metrics.coalesced.collect() for s in m.samples
               if s.labels.get("operation") == operation}
    return int(samples.get("vae_coalesced_requests_count", 0)), int(samples.get("vae_coalesced_requests_sum", 0))


def spy_rows(runtime, role):
    """Wrap the runtime's real encode/decode to record the rows of every call."""
    real, seen = getattr(runtime, role), []

    def spy(rows):
        seen.append(len(rows))
        return real(rows)

    setattr(runtime, role, spy)
    return seen


def test_concurrent_encodes_run_once_and_match_unbatched_results_bit_for_bit(repository, make_client):
    batched = make_client(repository, cache_max_entries=1, batching="on")
    alone = make_client(repository, batching="off")
    service = batched.app.state.service
    rows_seen = spy_rows(service.repository.loaded["linear"][1].runtime, "encode")
    points = np.random.default_rng(0).standard_normal((16, 5)).tolist()
    answers = concurrently(batched, *(lambda p=p: service.encode("linear:1", [p], 0, None) for p in points))
    assert rows_seen == [16] and runs_of(service, "encoder") == (1, 16)
    for point, (model, result) in zip(points, answers):
        expected = alone.post("/encode", json={"model": "linear:1", "x": [point]}).json()
        assert model == "linear:1"
        for field in ("mu", "logvar"):  # float32 both ways: JSON carries float32's shortest repr
            assert np.array_equal(result[field], np.array(expected[field], np.float32))


@pytest.mark.parametrize("graph", ["separate", "fused"])
def test_loglik_coalesces_only_requests_with_the_same_k_and_seed(repository, make_client, graph):
    batched = make_client(repository, loglik_graph=graph, batching="on")
    alone = make_client(repository, loglik_graph=graph, batching="off")
    service = batched.app.state.service
    x = np.random.default_rng(1).standard_normal((6, 5))
    requests = [(x[i : i + 1].tolist(), 300, i % 2) for i in range(6)]  # two seeds: two runs
    answers = concurrently(batched, *(lambda r=r: service.loglik("linear:2", *r) for r in requests))
    assert runs_of(service, "loglik") == (2, 6)
    for (points, k, seed), (_, result) in zip(requests, answers):
        expected = alone.post("/loglik", json={"model": "linear:2", "x": points, "k": k, "seed": seed}).json()
        assert [result[f].tolist() for f in ("loglik", "stderr", "elbo")] == [expected[f] for f in ("loglik", "stderr", "elbo")]


def test_a_run_holds_at_most_batch_max_points_and_never_splits_a_request(repository, make_client):
    client = make_client(repository, batch_max_points=8, batching="on")
    service = client.app.state.service
    rows_seen = spy_rows(service.repository.loaded["linear"][1].runtime, "decode")
    sizes = [3, 3, 3, 3, 12, 1]
    batches = [np.full((size, 3), i, dtype=float).tolist() for i, size in enumerate(sizes)]
    answers = concurrently(client, *(lambda z=z: service.decode("linear:1", z) for z in batches))
    assert sorted(rows_seen) == [1, 6, 6, 12]  # 3+3 | 3+3 (flushed at 8 rows: 3+3+3 > 8) | 12 alone | 1
    for z, (_, result) in zip(batches, answers):
        assert len(result["mean"]) == len(z)
        expected = client.post("/decode", json={"model": "linear:1", "z": z}).json()["mean"]
        assert np.array_equal(result["mean"], np.array(expected, np.float32))


def test_a_wait_lets_late_requests_join_the_run(repository, make_client):
    client = make_client(repository, batch_wait_ms=300, batching="on")
    service = client.app.state.service

    def late(delay, point):
        async def call():
            await asyncio.sleep(delay)
            return await service.encode("linear:1", [point], 0, None)
        return call

    concurrently(client, *(late(0.01 * i, [float(i)] * 5) for i in range(5)))  # 40 ms apart at most
    assert runs_of(service, "encoder") == (1, 5)


def test_a_failing_run_fails_every_request_in_it(repository, make_client):
    client = make_client(repository, batching="on")
    service = client.app.state.service
    runtime = service.repository.loaded["linear"][1].runtime

    def broken(rows):  # a model that breaks at run time: the fault the real graphs cannot produce on demand
        raise ModelRunFailed("model linear:1: its encoder graph failed")

    runtime.encode = broken
    answers = concurrently(client, *(lambda i=i: service.encode("linear:1", [[float(i)] * 5], 0, None)
                                     for i in range(4)))
    assert all(isinstance(a, ModelRunFailed) for a in answers)
    response = client.post("/encode", json={"model": "linear:1", "x": [[9.0] * 5]})
    assert response.status_code == 500 and "linear:1" in response.json()["detail"]


@pytest.mark.parametrize("inline_work", [10**6, 0])  # run inside the flush, or offloaded
def test_the_batcher_splits_outputs_back_in_order(inline_work):
    async def scenario():
        async def offload(function):
            return function()

        batcher = DynamicBatcher(max_points=100, max_wait_s=0, inline_work=inline_work, offload=offload)
        calls = [batcher.submit("key", "op", np.full((n, 2), n, float), lambda rows: (rows * 2, rows.sum(axis=1)), 2)
                 for n in (1, 2, 3)]
        return await asyncio.gather(*calls)

    for n, (doubled, sums) in zip((1, 2, 3), asyncio.run(scenario())):
        assert doubled.shape == (n, 2) and (doubled == 2 * n).all() and (sums == 2 * n).all()


def test_auto_batches_on_cuda_only(repository, make_client):
    service = make_client(repository).app.state.service
    assert service.batching == (service.provider == "CUDAExecutionProvider")
