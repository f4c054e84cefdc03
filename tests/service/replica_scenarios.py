"""What replicas behind a balancer must keep, measured on a Cluster (tests/service/cluster.py): a shared cache, a
rolling restart that fails no request, a new model version on every replica, a replica killed under load.

Each scenario returns what it measured; tests/service/test_replicas.py asserts on it and bench/replicas.py
writes it into docs/RELIABILITY.md.
"""

import json
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

from tests.service.cluster import FRONTENDS, Cluster
from tests.service.scenarios import binary_points, metric

REQUEST_TIMEOUT_S = 15.0


@dataclass
class Failure:
    at: float  # monotonic time the request ended
    frontend: str
    kind: str
    what: str  # the status and detail, or the transport error


@dataclass
class LoadReport:
    answered: Counter = field(default_factory=Counter)  # frontend -> 200s
    failures: list[Failure] = field(default_factory=list)

    def failed(self, frontend: str | None = None, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for f in self.failures if (frontend in (None, f.frontend)) and since <= f.at <= until)

    def total(self) -> int:
        return sum(self.answered.values()) + len(self.failures)


KINDS = ("encode", "loglik", "sample", "get-loglik")


def _mixed_request(client: httpx.Client, url: str, kind: str, i: int, j: int) -> httpx.Response:
    """A point encoded, a cacheable /loglik (k = 300, a pool of 17 points: hits and misses), seeded draws, or a
    GET /loglik."""
    if kind == "encode":
        return client.post(f"{url}/encode", json={"model": "digits", "x": [[(i * 7 + j % 13) / 20] * 64]})
    if kind == "loglik":
        return client.post(f"{url}/loglik", json={"model": "digits-binary", "x": binary_points(1, j % 17), "k": 300})
    if kind == "sample":
        return client.post(f"{url}/sample", json={"model": "digits", "n": 4, "seed": j})
    x = ",".join(str(v) for v in binary_points(1, j % 5)[0])
    return client.get(f"{url}/loglik", params={"model": "digits-binary", "k": 100, "seed": 0, "x": x})


class MixedLoad:
    """`clients` threads, each sending one request after another (and `pause_s` between them) through the
    balancer, cycling through its frontends and the four kinds of request, until stop()."""

    def __init__(self, cluster: Cluster, clients: int = 6, pause_s: float = 0.01):
        self.cluster, self.pause_s = cluster, pause_s
        self.report = LoadReport()
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> "MixedLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S + 5)

    def _loop(self, i: int) -> None:
        clients = {name: httpx.Client(timeout=REQUEST_TIMEOUT_S) for name in FRONTENDS}
        j = 0
        while not self._stop.is_set():
            frontend, kind, failure = FRONTENDS[(i + j) % len(FRONTENDS)], KINDS[(j // len(FRONTENDS)) % 4], None
            try:
                response = _mixed_request(clients[frontend], self.cluster.balancer.url(frontend), kind, i, j)
                if response.status_code != 200:
                    failure = f"{response.status_code} {response.text[:160]}"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if failure is None:
                    self.report.answered[frontend] += 1
                else:
                    self.report.failures.append(Failure(time.monotonic(), frontend, kind, failure))
            j += 1
            time.sleep(self.pause_s)
        for client in clients.values():
            client.close()


def cache_shared(cluster: Cluster) -> dict:
    """A /loglik computed on the first replica (a miss there) is a hit on each of the others, identical."""
    seed = time.time_ns() % 1_000_000_007  # a point no earlier run has cached
    body = {"model": "digits-binary", "x": binary_points(1, seed), "k": 1000, "seed": 0}
    first, others = cluster.replicas[0], cluster.replicas[1:]

    def counts(replica) -> tuple[float, float]:
        return (metric(replica, "vae_cache_hits_total", operation="loglik"),
                metric(replica, "vae_cache_misses_total", operation="loglik"))

    before = {r.name: counts(r) for r in cluster.replicas}
    start = time.perf_counter()
    computed = httpx.post(f"{first.url}/loglik", json=body, timeout=30)
    computed_ms = (time.perf_counter() - start) * 1e3
    answers, hit_ms = {}, []
    for replica in others:
        start = time.perf_counter()
        answers[replica.name] = httpx.post(f"{replica.url}/loglik", json=body, timeout=30)
        hit_ms.append((time.perf_counter() - start) * 1e3)
    after = {r.name: counts(r) for r in cluster.replicas}
    delta = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in after}
    return {"computed_on": first.name, "status": computed.status_code, "computed_ms": computed_ms,
            "hit_ms": max(hit_ms), "delta": delta,  # replica -> (hits, misses) added by these requests
            "identical": all(a.status_code == 200 and a.json() == computed.json() for a in answers.values()),
            "keys_in_redis": _redis_keys(cluster)}


def _redis_keys(cluster: Cluster) -> int:
    import redis

    return redis.Redis(port=cluster.redis_port).dbsize()


def rolling_restart(cluster: Cluster, clients: int = 6) -> dict:
    """Under a steady mixed load: SIGTERM each replica in turn, wait until it exits, start it again, wait until
    the balancer has it back in rotation, then the next."""
    steps = []
    with MixedLoad(cluster, clients) as load:
        time.sleep(1.0)
        for replica in cluster.replicas:
            signalled = time.monotonic()
            replica.process.send_signal(signal.SIGTERM)
            out_s = cluster.balancer.wait_state(replica.name, "DOWN")
            code = replica.process.wait(60)
            exited_s = time.monotonic() - signalled
            replica.start()
            ready_s = replica.wait_ready()
            cluster.balancer.wait_state(replica.name, "UP")
            steps.append({"replica": replica.name, "exit_code": code, "out_of_rotation_s": out_s,
                          "exited_s": exited_s, "ready_s": ready_s, "back_s": time.monotonic() - signalled})
        time.sleep(1.0)
    return {"steps": steps, "load": load.report, "clients": clients}


def new_version(cluster: Cluster, clients: int = 4) -> dict:
    """digits-binary/2 (the graphs of the shipped digits-binary-background/1, under the name digits-binary and
    version 2) renamed into the shared repository, complete, while clients ask for `digits-binary` (the latest
    version) through the balancer: when each replica first answers with version 2, and whether any answer names
    one version and carries the other's numbers (its /encode mu and cached /loglik against each version's own)."""
    point = binary_points(1, 42)
    encode_body, loglik_body = {"x": point}, {"x": point, "k": 300, "seed": 0}
    first = cluster.replicas[0].url

    def answer(route: str, model: str, body: dict) -> dict:
        response = httpx.post(f"{first}/{route}", json={"model": model, **body}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    expected = {"digits-binary:1": (answer("encode", "digits-binary:1", encode_body)["mu"],
                                    answer("loglik", "digits-binary:1", loglik_body)["loglik"]),
                "digits-binary:2": (answer("encode", "digits-binary-background:1", encode_body)["mu"],
                                    answer("loglik", "digits-binary-background:1", loglik_body)["loglik"])}
    assert not np.allclose(expected["digits-binary:1"][0], expected["digits-binary:2"][0])  # versions tell apart

    labels, mixed, failures, lock, stop = Counter(), [], [], threading.Lock(), threading.Event()

    def check(i: int) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            j = 0
            while not stop.is_set():
                frontend, route = FRONTENDS[(i + j) % len(FRONTENDS)], ("encode", "loglik")[j % 2]
                j += 1
                body = encode_body if route == "encode" else loglik_body
                try:
                    response = client.post(f"{cluster.balancer.url(frontend)}/{route}",
                                           json={"model": "digits-binary", **body})
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:160]}")
                        continue
                    reply = response.json()
                    label = reply["model"]
                    labels[label, route] += 1
                    values = reply["mu"] if route == "encode" else reply["loglik"]
                    own = expected.get(label, (None, None))[0 if route == "encode" else 1]
                    if own is None or not np.allclose(values, own, rtol=1e-6, atol=1e-6):
                        mixed.append((label, route))

    threads = [threading.Thread(target=check, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    staging = cluster.workdir / "staging" / "2"
    shutil.copytree(cluster.repository / "digits-binary-background" / "1", staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest.update(name="digits-binary", version=2)
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    published = time.monotonic()
    staging.rename(cluster.repository / "digits-binary" / "2")  # complete, in one step
    pending, served_after = {r.name: r for r in cluster.replicas}, {}
    while pending and time.monotonic() - published < 30:
        for name, replica in list(pending.items()):
            reply = httpx.post(f"{replica.url}/encode", json={"model": "digits-binary", **encode_body}, timeout=10)
            if reply.status_code == 200 and reply.json()["model"] == "digits-binary:2":
                served_after[name] = time.monotonic() - published
                del pending[name]
        time.sleep(0.02)
    all_switched = time.monotonic()
    with lock:
        before_switch = Counter(labels)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT_S + 5)
    after_switch = labels - before_switch
    return {"served_after_s": served_after, "labels": dict(labels), "mixed": mixed, "failures": failures,
            "old_after_switch": sum(n for (label, _), n in after_switch.items() if label != "digits-binary:2"),
            "answers_after_switch": sum(after_switch.values()), "switched_in_s": all_switched - published}


def replica_killed(cluster: Cluster, clients: int = 6, victim: int = 1) -> dict:
    """Under the mixed load, SIGKILL one replica; the balancer takes it out; then it is started again. Failed
    requests per frontend (retry policy) between the kill and its return."""
    replica = cluster.replicas[victim]
    with MixedLoad(cluster, clients) as load:
        time.sleep(1.0)
        killed = time.monotonic()
        replica.kill()
        out_s = cluster.balancer.wait_state(replica.name, "DOWN")
        time.sleep(1.0)
        replica.start()
        replica.wait_ready()
        cluster.balancer.wait_state(replica.name, "UP")
        back = time.monotonic()
        time.sleep(1.0)
    report = load.report
    return {"out_of_rotation_s": out_s, "back_s": back - killed, "load": report, "clients": clients,
            "failed": {name: report.failed(name) for name in FRONTENDS},
            "answered": dict(report.answered)}
