"""The cache against the real Redis: hits, keys, TTLs, compact values, outages and recovery."""

import asyncio
import json
import shutil
import socket
import time

import numpy as np
import pytest
import redis

from service.dataplane.cache import KEY_PREFIX, MemoryCache
from service.settings import Settings
from tests.service.handmade import LinearGaussian
from tests.service.network import free_port
from tests.service.serving import start_redis

REDIS_URL = "redis://127.0.0.1:6379/15"  # a database of its own, flushed by the tests
REQUEST = {"model": "linear:2", "x": np.random.default_rng(0).standard_normal((8, 5)).tolist(), "k": 500, "seed": 4}


@pytest.fixture
def shared_redis():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def counter(client, name, operation):
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'{name}_total{{operation="{operation}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_memory_cache_answers_the_same_request_with_the_same_numbers(client):
    first = client.post("/loglik", json=REQUEST).json()
    second = client.post("/loglik", json=REQUEST).json()
    assert first == second
    assert counter(client, "vae_cache_hits", "loglik") == 1 and counter(client, "vae_cache_misses", "loglik") == 1
    assert client.get("/health/ready").json()["cache"]["entries"] == 1


def test_results_cheaper_than_the_cache_are_computed_every_time(repository, make_client):
    """Under the default VAE_CACHE_MIN_WORK (256 rows through a model), 8 points x k = 500 are cached, while a
    single point encoded, or scored with k = 100, is computed again (and counted neither hit nor miss)."""
    client = make_client(repository, cache_min_work=Settings().cache_min_work)
    small = [{"model": "linear:2", "x": REQUEST["x"][:1], "k": 100}, {"model": "linear:2", "x": REQUEST["x"][:1]}]
    for _ in range(2):
        for path, body in zip(("/loglik", "/encode"), small):
            assert client.post(path, json=body).status_code == 200
    assert client.get("/health/ready").json()["cache"]["entries"] == 0
    assert counter(client, "vae_cache_misses", "loglik") == counter(client, "vae_cache_misses", "encode") == 0
    first, second = (client.post("/loglik", json=REQUEST).json() for _ in range(2))
    assert first == second and counter(client, "vae_cache_hits", "loglik") == 1
    assert client.get("/health/ready").json()["cache"]["entries"] == 1


def test_redis_cache_hits_keys_ttl_and_compact_values(repository, make_client, shared_redis):
    client = make_client(repository, redis_url=REDIS_URL, cache_ttl_s=120)
    assert client.get("/health/ready").json()["cache"] == {"backend": "redis", "state": "ok"}
    computed = client.post("/loglik", json=REQUEST).json()
    keys = shared_redis.keys(f"{KEY_PREFIX}:loglik:*")
    assert len(keys) == 1
    assert 0 < shared_redis.ttl(keys[0]) <= 120
    assert len(shared_redis.get(keys[0])) < len(json.dumps(computed))  # binary arrays, not JSON floats
    cached = client.post("/loglik", json=REQUEST).json()
    assert cached == computed
    assert counter(client, "vae_cache_hits", "loglik") == 1
    # A second service on the same Redis answers from the entry the first one wrote.
    other = make_client(repository, redis_url=REDIS_URL)
    assert other.post("/loglik", json=REQUEST).json() == computed
    assert counter(other, "vae_cache_hits", "loglik") == 1
    # Everything that is cacheable lands in Redis; what is random (no seed) does not.
    client.post("/encode", json={"model": "linear:2", "x": REQUEST["x"]})
    client.post("/encode", json={"model": "linear:2", "x": REQUEST["x"], "samples": 2})
    client.post("/decode", json={"model": "linear:2", "z": [[0, 0, 0]]})
    client.post("/sample", json={"model": "linear:2", "n": 3, "seed": 1})
    client.post("/sample", json={"model": "linear:2", "n": 3})
    kinds = sorted(k.decode().split(":")[2] for k in shared_redis.keys(f"{KEY_PREFIX}:*"))
    assert kinds == ["decode", "encode", "loglik", "sample"]


def test_a_changed_model_is_never_answered_from_an_old_entry(repository, make_client, shared_redis):
    before = make_client(repository, redis_url=REDIS_URL).post("/loglik", json=REQUEST).json()
    shutil.rmtree(repository / "linear" / "2")
    LinearGaussian(proposal_shift=0.1, proposal_widen=3.0).write(repository, "linear", 2)  # same name, new files
    after_client = make_client(repository, redis_url=REDIS_URL)
    after = after_client.post("/loglik", json=REQUEST).json()
    assert counter(after_client, "vae_cache_hits", "loglik") == 0
    assert after["loglik"] != before["loglik"]
    assert len(shared_redis.keys(f"{KEY_PREFIX}:loglik:*")) == 2


def test_unreachable_redis_degrades_but_every_request_succeeds(repository, make_client):
    client = make_client(repository, redis_url="redis://127.0.0.1:1/0")
    for _ in range(2):
        response = client.post("/loglik", json=REQUEST)
        assert response.status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["cache"]["state"] == "degraded" and "Connection" in ready.json()["cache"]["error"]


def test_redis_stopped_then_started_again_is_picked_up_by_itself(repository, make_client):
    port = free_port()
    server = start_redis(port)
    try:
        client = make_client(repository, redis_url=f"redis://127.0.0.1:{port}/0", redis_retry_s=0.2)
        expected = client.post("/loglik", json=REQUEST).json()
        assert client.post("/loglik", json=REQUEST).json() == expected  # a hit
        server.terminate(), server.wait(10)
        during = client.post("/loglik", json=REQUEST)  # Redis is gone: computed, not cached, still right
        assert during.status_code == 200 and during.json() == expected
        assert client.get("/health/ready").json()["cache"]["state"] == "degraded"
        server = start_redis(port)  # empty: the old entries are gone with the old server
        time.sleep(0.3)  # past redis_retry_s
        assert client.get("/health/ready").json()["cache"]["state"] == "ok"
        assert client.post("/loglik", json=REQUEST).json() == expected  # a miss, stored again
        assert client.post("/loglik", json=REQUEST).json() == expected  # a hit
        assert redis.Redis(port=port).dbsize() == 1
        assert counter(client, "vae_cache_hits", "loglik") == 2  # before the outage and after
    finally:
        server.terminate()
        server.wait(10)


def test_cache_values_round_trip_and_garbage_is_refused():
    from service.dataplane.cache import pack, unpack

    arrays = {"mu": np.arange(6, dtype=np.float32).reshape(2, 3), "loglik": np.array([-1.5, 2.0]),
              "z": np.zeros((2, 0, 3), np.float32)}
    restored = unpack(pack(arrays))
    assert list(restored) == list(arrays)
    for name in arrays:
        assert restored[name].dtype == arrays[name].dtype and np.array_equal(restored[name], arrays[name])
    for garbage in (b"", b"\x05\x00\x00\x00{bad", pack(arrays) + b"x", b"\x02\x00\x00\x00[]"):
        with pytest.raises(ValueError):
            unpack(garbage)


def test_the_key_is_the_request_in_canonical_form(client):
    nested = {"model": "bern1d:1", "x": [[[[1, 0, 1], [0, 0, 1]]]], "k": 50}
    client.post("/loglik", json=nested)
    for same in ({"model": "bern1d:1", "x": [[1, 0, 1, 0, 0, 1]], "k": 50},  # flat
                 {"model": "bern1d:1", "x": [[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]], "k": 50, "seed": 0}):  # floats, default seed
        client.post("/loglik", json=same)
    assert counter(client, "vae_cache_hits", "loglik") == 2
    client.post("/loglik", json={**nested, "k": 51})
    client.post("/loglik", json={**nested, "seed": 1})
    client.post("/loglik", json={**nested, "model": "bern1d"})  # the same model by another name: a hit
    assert counter(client, "vae_cache_misses", "loglik") == 3


def test_a_damaged_entry_is_a_miss_not_an_error(repository, make_client, shared_redis):
    client = make_client(repository, redis_url=REDIS_URL)
    expected = client.post("/loglik", json=REQUEST).json()
    (key,) = shared_redis.keys(f"{KEY_PREFIX}:loglik:*")
    shared_redis.set(key, b"\x10\x00\x00\x00not what we wrote")
    assert client.post("/loglik", json=REQUEST).json() == expected
    assert counter(client, "vae_cache_hits", "loglik") == 0 and counter(client, "vae_cache_misses", "loglik") == 2


def test_a_redis_that_never_answers_costs_one_timeout_then_is_skipped(repository, make_client):
    import threading

    silent = socket.socket()  # accepts connections, never replies: a hung server, not a refused one
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(silent.accept()) for _ in range(64)], daemon=True).start()
    try:
        client = make_client(repository, redis_url=f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                             redis_timeout_s=0.2, redis_retry_s=30)
        start = time.monotonic()
        first = client.post("/loglik", json=REQUEST)
        first_took = time.monotonic() - start
        start = time.monotonic()
        for _ in range(5):
            assert client.post("/loglik", json=REQUEST).status_code == 200
        later_took = (time.monotonic() - start) / 5
        assert first.status_code == 200 and first_took < 2.0
        assert later_took < 0.15  # Redis is skipped for redis_retry_s after the timeout
    finally:
        silent.close()
        for connection, _ in accepted:
            connection.close()


def test_the_memory_cache_is_bounded_in_bytes_and_entries():
    cache = MemoryCache(max_entries=100, ttl_s=60, max_bytes=1 << 20)
    for i in range(50):
        asyncio.run(cache.set(f"big{i}", bytes(100_000)))  # 5 MB offered to a 1 MB cache
    status = asyncio.run(cache.status())
    assert status["bytes"] <= 1 << 20 and status["entries"] == 10
    for i in range(500):
        asyncio.run(cache.set(f"small{i}", b"x"))
    assert asyncio.run(cache.status())["entries"] <= 100
    asyncio.run(cache.set("huge", bytes(2 << 20)))  # larger than the cache: dropped, not an error
    assert asyncio.run(cache.get("huge")) is None and asyncio.run(cache.get("small499")) == b"x"
