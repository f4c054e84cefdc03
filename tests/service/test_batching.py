"""Dynamic batching: concurrent requests for the same run are coalesced into one run, and each request answers
exactly what it answers alone.

Every expected answer comes from outside the batcher: the same request served through HTTP by a service with
batching off, and a float64 NumPy reference of the hand-built linear models. Every request holds points of its
own (distinct rows, batches of different sizes), so rows handed back to the wrong request, or shifted by one
request, cannot go unnoticed. Requests are issued concurrently on the app's own event loop (TestClient's portal).
"""

import asyncio
import time

import numpy as np
import pytest

from service.dataplane.batching import DynamicBatcher
from service.errors import ModelRunFailed
from tests.service.handmade import LinearGaussian

LINEAR = {1: LinearGaussian(), 2: LinearGaussian(proposal_shift=0.4, proposal_widen=2.0)}  # as conftest writes them


def encode_linear(rows):
    """linear:1's encoder in float64, as a model run hands back its arrays."""
    return dict(zip(("mu", "logvar"), LINEAR[1].encode(rows)))


def concurrently(client, *calls, timeout_s=30):
    """Run the coroutine functions in `calls` at once on the app's event loop; their results (or exceptions) in
    order. A request the batcher forgets fails the test at the timeout instead of hanging it."""

    async def gather():
        return await asyncio.wait_for(asyncio.gather(*(call() for call in calls), return_exceptions=True), timeout_s)

    return client.portal.call(gather)


def distinct_batches(sizes, width, seed=0):
    """One batch of `size` rows per request, every row different from every other."""
    rows = np.random.default_rng(seed).standard_normal((sum(sizes), width))
    return np.split(rows, np.cumsum(sizes)[:-1])


def runs_of(service, operation):
    """How many coalesced runs an operation made, and how many requests they answered (from /metrics' source)."""
    samples = {s.name: s.value for m in service.metrics.coalesced.collect() for s in m.samples
               if s.labels.get("operation") == operation}
    return int(samples.get("vae_coalesced_requests_count", 0)), int(samples.get("vae_coalesced_requests_sum", 0))


def spy_runs(dataplane, version, operation):
    """Wrap linear:<version>'s engine's real encode or decode to record the rows of every call it gets."""
    engine = dataplane.model(f"linear:{version}")
    real, seen = getattr(engine, operation), []

    def spy(rows, *args):
        seen.append(np.array(rows))
        return real(rows, *args)

    setattr(engine, operation, spy)
    return seen


def rows_of(*batches):
    """The rows of these requests, in this order, as the service hands them to the model (float32)."""
    return np.concatenate(batches).astype(np.float32)


def assert_encoded(result, x, version):
    """result is linear:<version>'s encoding of exactly the points x (float32 graph against float64)."""
    mu, logvar = LINEAR[version].encode(x)
    np.testing.assert_allclose(result["mu"], mu, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result["logvar"], logvar, rtol=0, atol=1e-5)


def assert_decoded(result, z):
    """result is linear:1's decoding of exactly the latents z (float32 graph against float64)."""
    for field, expected in LINEAR[1].decode(z).items():
        np.testing.assert_allclose(result[field], expected, rtol=0, atol=1e-5)


def test_concurrent_encodes_run_once_and_each_answers_what_it_answers_alone(repository, make_client):
    batched = make_client(repository, batching="on")
    alone = make_client(repository, batching="off")
    service = batched.app.state.dataplane
    runs = spy_runs(service, 1, "encode")
    batches = distinct_batches([1, 3, 2, 4, 1, 5], width=5)
    answers = concurrently(batched, *(lambda x=x: service.encode("linear:1", x.tolist(), 0, None) for x in batches))
    assert len(runs) == 1 and np.array_equal(runs[0], rows_of(*batches))  # one run, requests in arrival order
    assert runs_of(service, "encoder") == (1, 6)
    for x, (model, result) in zip(batches, answers):
        assert model == "linear:1" and result["mu"].shape == (len(x), 3)
        assert_encoded(result, x, 1)
        expected = alone.post("/encode", json={"model": "linear:1", "x": x.tolist()}).json()
        for field in ("mu", "logvar"):  # bit for bit: JSON carries float32's shortest repr
            assert np.array_equal(result[field], np.array(expected[field], np.float32))


@pytest.mark.parametrize("graph", ["separate", "fused"])
def test_loglik_coalesces_only_requests_with_the_same_k_and_seed(repository, make_client, graph):
    batched = make_client(repository, loglik_graph=graph, batching="on")
    alone = make_client(repository, loglik_graph=graph, batching="off")
    service = batched.app.state.dataplane
    batches = distinct_batches([1, 2, 3, 1, 2, 1], width=5, seed=1)
    requests = [(x.tolist(), 300, i % 2) for i, x in enumerate(batches)]  # two seeds: two runs
    answers = concurrently(batched, *(lambda r=r: service.loglik("linear:2", *r) for r in requests))
    assert runs_of(service, "loglik") == (2, 6)
    for (points, k, seed), (_, how, result) in zip(requests, answers):
        assert how == ("importance", k)
        expected = alone.post("/loglik", json={"model": "linear:2", "x": points, "k": k, "seed": seed}).json()
        assert [result[f].tolist() for f in ("loglik", "stderr", "elbo")] == [expected[f] for f in ("loglik", "stderr", "elbo")]
    # The other seed gives other numbers (a poor proposal), so a run that mixed the seeds could not pass above.
    other = alone.post("/loglik", json={"model": "linear:2", "x": requests[0][0], "k": 300, "seed": 1}).json()
    assert other["loglik"] != answers[0][2]["loglik"].tolist()


def test_a_run_holds_at_most_batch_max_points_and_never_splits_a_request(repository, make_client):
    client = make_client(repository, batch_max_points=8, batching="on")
    alone = make_client(repository, batching="off")
    service = client.app.state.dataplane
    runs = spy_runs(service, 1, "decode")
    batches = distinct_batches([3, 3, 3, 3, 12, 1], width=3, seed=2)
    answers = concurrently(client, *(lambda z=z: service.decode("linear:1", z.tolist()) for z in batches))
    # 3+3 (a third 3 would pass 8) | 3+3 (12 would pass 8) | 12 alone, over the limit but never split | 1
    expected_runs = [rows_of(*batches[0:2]), rows_of(*batches[2:4]), rows_of(batches[4]), rows_of(batches[5])]
    assert len(runs) == len(expected_runs) and all(map(np.array_equal, runs, expected_runs))
    for z, (_, result) in zip(batches, answers):
        assert_decoded(result, z)
        expected = alone.post("/decode", json={"model": "linear:1", "z": z.tolist()}).json()
        assert np.array_equal(result["mean"], np.array(expected["mean"], np.float32))


def test_a_full_run_starts_at_once_and_a_partial_one_waits(repository, make_client):
    client = make_client(repository, batch_max_points=8, batch_wait_ms=1000, batching="on")
    service = client.app.state.dataplane
    runs = spy_runs(service, 1, "encode")
    batches = distinct_batches([4, 4, 3], width=5, seed=11)

    async def timed(*xs):
        start = time.monotonic()
        answers = await asyncio.wait_for(asyncio.gather(*(service.encode("linear:1", x.tolist(), 0, None)
                                                          for x in xs)), 10)
        return time.monotonic() - start, answers

    elapsed, answers = client.portal.call(timed, batches[0], batches[1])  # 4 + 4 rows: full
    assert elapsed < 0.5 and len(runs) == 1 and np.array_equal(runs[0], rows_of(batches[0], batches[1]))
    for x, (_, result) in zip(batches, answers):
        assert_encoded(result, x, 1)
    elapsed, [(_, result)] = client.portal.call(timed, batches[2])  # 3 rows: waits for others to join
    assert elapsed >= 0.95 and len(runs) == 2
    assert_encoded(result, batches[2], 1)


def test_a_wait_lets_late_requests_join_the_run(repository, make_client):
    client = make_client(repository, batch_wait_ms=300, batching="on")
    service = client.app.state.dataplane
    runs = spy_runs(service, 1, "encode")
    batches = distinct_batches([2, 1, 3, 1, 2], width=5, seed=3)

    def late(delay, x):
        async def call():
            await asyncio.sleep(delay)
            return await service.encode("linear:1", x.tolist(), 0, None)
        return call

    answers = concurrently(client, *(late(0.01 * i, x) for i, x in enumerate(batches)))  # 40 ms apart at most
    assert runs_of(service, "encoder") == (1, 5) and len(runs) == 1 and np.array_equal(runs[0], rows_of(*batches))
    for x, (_, result) in zip(batches, answers):
        assert_encoded(result, x, 1)


@pytest.mark.parametrize("inline_work_elements", [65536, 0])  # the run inside the flush, or in a worker thread
def test_a_failing_run_fails_every_request_in_it_and_no_other(repository, make_client, inline_work_elements):
    client = make_client(repository, batching="on", inline_work_elements=inline_work_elements)
    service = client.app.state.dataplane
    engine = service.model("linear:1")
    real_encode, poison = engine.encode, 99.0

    def encode_unless_poisoned(rows, *args):  # a graph that breaks on one input: a fault real graphs cannot make
        if (rows == poison).any():
            raise ModelRunFailed("model linear:1: its encoder graph failed")
        return real_encode(rows, *args)

    engine.encode = encode_unless_poisoned
    healthy = distinct_batches([2, 1, 3, 2], width=5, seed=4)
    z = distinct_batches([2], width=3, seed=5)[0]
    answers = concurrently(
        client,
        lambda: service.encode("linear:1", healthy[0].tolist(), 0, None),  # one run of linear:1: these three
        lambda: service.encode("linear:1", [[poison] * 5], 0, None),
        lambda: service.encode("linear:1", healthy[1].tolist(), 0, None),
        lambda: service.encode("linear:2", healthy[2].tolist(), 0, None),  # a run of its own
        lambda: service.decode("linear:1", z.tolist()),  # another run of its own
    )
    assert all(isinstance(a, ModelRunFailed) for a in answers[:3]), answers[:3]  # healthy ones too: same run
    assert runs_of(service, "encoder") == (2, 4)
    assert_encoded(answers[3][1], healthy[2], 2)
    assert_decoded(answers[4][1], z)
    # The failure does not stick: the same healthy points in a run of their own are answered.
    assert_encoded(concurrently(client, lambda: service.encode("linear:1", healthy[3].tolist(), 0, None))[0][1],
                   healthy[3], 1)
    response = client.post("/encode", json={"model": "linear:1", "x": [[poison] * 5]})
    assert response.status_code == 500 and "linear:1" in response.json()["detail"]
    assert client.post("/encode", json={"model": "linear:1", "x": healthy[0].tolist()}).status_code == 200


def test_a_waiter_cancelled_before_its_run_is_left_out_of_it(repository, make_client):
    client = make_client(repository, batch_wait_ms=200, batching="on")
    service = client.app.state.dataplane
    runs = spy_runs(service, 1, "encode")
    batches = distinct_batches([2, 3, 1], width=5, seed=6)

    async def cancel_some(batches, cancelled):
        tasks = [asyncio.ensure_future(service.encode("linear:1", x.tolist(), 0, None)) for x in batches]
        await asyncio.sleep(0.05)  # all of them wait for the run (200 ms)
        for i in cancelled:
            tasks[i].cancel()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)

    answers = client.portal.call(cancel_some, batches, [1])
    assert isinstance(answers[1], asyncio.CancelledError)
    assert len(runs) == 1 and np.array_equal(runs[0], rows_of(batches[0], batches[2]))
    assert_encoded(answers[0][1], batches[0], 1)
    assert_encoded(answers[2][1], batches[2], 1)
    assert runs_of(service, "encoder") == (1, 2)

    fresh = distinct_batches([2, 3, 1], width=5, seed=60)  # not cached
    answers = client.portal.call(cancel_some, fresh, [0, 1, 2])  # everyone gone: nothing is computed
    assert all(isinstance(a, asyncio.CancelledError) for a in answers)
    client.portal.call(asyncio.sleep, 0.3)  # past the wait
    assert len(runs) == 1 and runs_of(service, "encoder") == (1, 2)


def test_a_waiter_cancelled_while_its_run_is_in_flight_leaves_the_others_their_own_rows():
    batches = distinct_batches([2, 1, 3], width=5, seed=7)

    async def scenario():
        release = asyncio.Event()

        async def offload(function):  # a worker thread that has not started yet
            await release.wait()
            return function()

        batcher = DynamicBatcher(max_points=100, max_wait_s=0, inline_work=0, offload=offload)
        tasks = [asyncio.ensure_future(batcher.submit("key", "encode", x, encode_linear, 5)) for x in batches]
        await asyncio.sleep(0.01)  # flushed: the run of all three waits for its thread
        tasks[0].cancel()
        release.set()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)

    answers = asyncio.run(scenario())
    assert isinstance(answers[0], asyncio.CancelledError)
    for x, answer in zip(batches[1:], answers[1:]):
        expected_mu, expected_logvar = LINEAR[1].encode(x)
        np.testing.assert_allclose(answer["mu"], expected_mu, rtol=1e-12)
        np.testing.assert_allclose(answer["logvar"], expected_logvar, rtol=1e-12)


@pytest.mark.parametrize("inline_work", [10**6, 0])  # run inside the flush, or offloaded
def test_the_batcher_splits_each_output_back_to_its_request(inline_work):
    batches = distinct_batches([1, 4, 2, 3], width=5, seed=8)

    def run(rows):  # arrays of different widths: (N, L), (N, L), (N,)
        return {**encode_linear(rows), "squares": (rows**2).sum(axis=1)}

    async def scenario():
        async def offload(function):
            return function()

        batcher = DynamicBatcher(max_points=100, max_wait_s=0, inline_work=inline_work, offload=offload)
        calls = (batcher.submit("key", "encode", x, run, 5) for x in batches)
        return await asyncio.wait_for(asyncio.gather(*calls), 10)

    for x, answer in zip(batches, asyncio.run(scenario())):
        expected_mu, expected_logvar = LINEAR[1].encode(x)
        np.testing.assert_allclose(answer["mu"], expected_mu, rtol=1e-12)
        np.testing.assert_allclose(answer["logvar"], expected_logvar, rtol=1e-12)
        np.testing.assert_allclose(answer["squares"], [float(row @ row) for row in x], rtol=1e-12)


def test_auto_coalesces_small_requests_on_the_cpu_and_every_request_on_cuda(repository, make_client):
    # On the CPU, requests small enough to run on the event loop (VAE_INLINE_WORK_ELEMENTS values: here 10, two
    # points of 5) are coalesced; a larger one runs alone, in a worker thread, within its own deadline.
    client = make_client(repository, device="cpu", inline_work_elements=10)  # batching "auto", the default
    service = client.app.state.dataplane
    runs = spy_runs(service, 1, "encode")
    batches = distinct_batches([1, 3, 1], width=5, seed=9)
    answers = concurrently(client, *(lambda x=x: service.encode("linear:1", x.tolist(), 0, None) for x in batches))
    assert sorted(len(rows) for rows in runs) == [2, 3] and runs_of(service, "encoder") == (1, 2)
    coalesced = next(rows for rows in runs if len(rows) == 2)
    assert np.array_equal(coalesced, rows_of(batches[0], batches[2]))
    for x, (_, result) in zip(batches, answers):
        assert_encoded(result, x, 1)

    runs.clear()  # the same model, told that its graphs run on CUDA: every request shares a run, whatever its size
    service.model("linear:1").device = "cuda"
    batches = distinct_batches([1, 2, 1], width=5, seed=10)  # not cached
    answers = concurrently(client, *(lambda x=x: service.encode("linear:1", x.tolist(), 0, None) for x in batches))
    assert len(runs) == 1 and np.array_equal(runs[0], rows_of(*batches)) and runs_of(service, "encoder") == (2, 5)
    for x, (_, result) in zip(batches, answers):
        assert_encoded(result, x, 1)


def test_encodes_without_draws_share_a_run_whatever_seed_they_send_and_seeded_draws_only_their_own(repository,
                                                                                                   make_client):
    client = make_client(repository, batching="on")
    service = client.app.state.dataplane
    runs = spy_runs(service, 1, "encode")
    batches = distinct_batches([1, 2, 1, 2], width=5, seed=12)
    calls = [(batches[0], 0, 1), (batches[1], 0, 2), (batches[2], 3, 7), (batches[3], 3, 8)]  # (x, samples, seed)
    answers = concurrently(client, *(lambda c=c: service.encode("linear:1", c[0].tolist(), c[1], c[2]) for c in calls))
    assert sorted(len(rows) for rows in runs) == [1, 2, 3]  # the two without draws together; each seed alone
    alone = make_client(repository, batching="off")
    for (x, samples, seed), (_, result) in zip(calls, answers):
        expected = alone.post("/encode", json={"model": "linear:1", "x": x.tolist(), "samples": samples,
                                               "seed": seed}).json()
        assert set(result) == set(expected) - {"model"}
        for field in result:
            assert np.array_equal(result[field], np.array(expected[field], np.float32))
