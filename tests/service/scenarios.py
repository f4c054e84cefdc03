"""Overload, fault and attack scenarios against a running server; each returns what it measured.

Used by the tests (small and bounded) and by bench/reliability.py (larger, figures into docs/RELIABILITY.md).
"""

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
import numpy as np

from tests.service.serving import RunningServer

PROBE = """
import json, sys, time, httpx
latencies, end = [], time.monotonic() + float(sys.argv[2])
with httpx.Client() as client:
    while time.monotonic() < end:
        start = time.monotonic()
        client.get(sys.argv[1] + "/health/live", timeout=30)
        latencies.append(time.monotonic() - start)
        time.sleep(0.05)
print(json.dumps({"count": len(latencies), "max_s": max(latencies)}))
"""


def liveness_probe(url: str, seconds: float) -> subprocess.Popen:
    """GET /health/live every 50 ms from a process of its own (the load's client would skew it); .communicate()
    gives {"count", "max_s"}."""
    return subprocess.Popen([sys.executable, "-c", PROBE, url, str(seconds)], stdout=subprocess.PIPE, text=True)


def binary_points(n: int, seed: int) -> list:
    return (np.random.default_rng(seed).random((n, 64)) > 0.5).astype(int).tolist()


async def _burst(url: str, clients: int, n: int, k: int, timeout: float) -> list[tuple]:
    async def one(client: httpx.AsyncClient, i: int) -> tuple:
        start = time.monotonic()
        try:
            r = await client.post(f"{url}/loglik", json={"model": "digits-binary", "x": binary_points(n, i), "k": k,
                                                         "seed": i}, timeout=timeout)
            return r.status_code, time.monotonic() - start, r.headers.get("retry-after"), r.json()
        except httpx.HTTPError as exc:
            return type(exc).__name__, time.monotonic() - start, None, None

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients)) as client:
        return await asyncio.gather(*(one(client, i) for i in range(clients)))


def burst(server: RunningServer, clients: int, n: int, k: int, timeout: float = 60) -> dict:
    """`clients` concurrent /loglik requests of n points and k samples each, with a liveness probe beside them."""
    probe = liveness_probe(server.url, 5)
    start = time.monotonic()
    results = asyncio.run(_burst(server.url, clients, n, k, timeout))
    wall = time.monotonic() - start
    live = json.loads(probe.communicate(timeout=60)[0])
    statuses = Counter(r[0] for r in results)
    return {
        "clients": clients, "n": n, "k": k, "wall_s": wall, "statuses": dict(statuses),
        "max_latency_s": max(r[1] for r in results),
        "shed_without_retry_after": sum(1 for r in results if r[0] == 429 and not r[2]),
        "shed_details": {r[3]["detail"] for r in results if r[0] == 429},
        "live_max_s": live["max_s"], "live_count": live["count"],
    }


def metric(server: RunningServer, name: str, **labels: str) -> float:
    """One sample of /metrics (summed over the labels not given)."""
    total = 0.0
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            total += float(value)
    return total


def abandon(server: RunningServer, clients: int, n: int, k: int, hold_s: float = 1.0) -> dict:
    """`clients` heavy /loglik requests whose clients hang up after hold_s; then the server's CPU use."""
    bodies = [json.dumps({"model": "digits-binary", "x": binary_points(n, i), "k": k, "seed": i}).encode()
              for i in range(clients)]
    sockets = []
    for body in bodies:
        connection = socket.create_connection(("127.0.0.1", server.port))
        connection.sendall(b"POST /loglik HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        sockets.append(connection)
    time.sleep(hold_s)
    abandoned_at = time.monotonic()
    for connection in sockets:
        connection.close()
    time.sleep(2.0)
    cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
    time.sleep(1.0)
    busy = (server.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
    return {"clients": clients, "n": n, "k": k, "cpu_share_2s_after": busy,
            "seconds_after_abandon": time.monotonic() - abandoned_at,
            "cancelled": metric(server, "vae_http_requests_dropped_total", reason="cancelled"),
            "counted_200": metric(server, "vae_http_requests_total", endpoint="/loglik", status="200")}


def slowloris(server: RunningServer, connections: int, seconds: float) -> dict:
    """`connections` sockets trickling header bytes; meanwhile ordinary requests; who got answered, and when
    the slow ones were closed."""
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(connections)]
    for connection in slow:
        connection.sendall(b"POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        connection.setblocking(False)
    answered, latencies, closed_at = 0, [], {}
    start = time.monotonic()
    with httpx.Client() as client:
        while time.monotonic() - start < seconds:
            for i, connection in enumerate(slow):
                if i in closed_at:
                    continue
                try:
                    connection.sendall(b"X-Slow: 1\r\n")
                    if connection.recv(4096):
                        closed_at[i] = time.monotonic() - start
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[i] = time.monotonic() - start
            t = time.monotonic()
            if client.post(f"{server.url}/encode", json={"x": [[0.1] * 64]}, timeout=10).status_code == 200:
                answered += 1
            latencies.append(time.monotonic() - t)
            time.sleep(0.05)
    for connection in slow:
        connection.close()
    return {"connections": connections, "ordinary_answered": answered, "ordinary_max_s": max(latencies),
            "slow_closed": len(closed_at), "slow_closed_by_s": max(closed_at.values(), default=None)}


def redis_killed_under_load(server: RunningServer, redis_restart, clients: int, seconds: float) -> dict:
    """`clients` threads calling /encode and /loglik in a loop (repeated points: the /loglik calls, k = 300 over
    VAE_CACHE_MIN_WORK, are cache hits and misses) while Redis is killed (SIGKILL) a third of the way in and
    started again; every answer must be a 200.
    redis_restart(kill) kills the Redis (kill=True) or starts it again (kill=False)."""
    import threading

    counts, stop = Counter(), threading.Event()

    def loop(i: int) -> None:
        with httpx.Client() as client:
            j = 0
            while not stop.is_set():
                j += 1
                if j % 2:
                    r = client.post(f"{server.url}/encode", json={"x": [[(i * 7 + j % 13) / 100] * 64]}, timeout=10)
                else:
                    r = client.post(f"{server.url}/loglik", timeout=10, json={
                        "model": "digits-binary", "x": binary_points(1, j % 17), "k": 300})
                counts[r.status_code] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 3)
    redis_restart(kill=True)
    time.sleep(seconds / 3)
    redis_restart(kill=False)
    hits_at_restart = metric(server, "vae_cache_hits_total")
    time.sleep(seconds / 3)
    stop.set()
    for thread in threads:
        thread.join(30)
    return {"clients": clients, "seconds": seconds, "statuses": dict(counts),
            "hits_at_restart": hits_at_restart, "hits_at_end": metric(server, "vae_cache_hits_total")}


def peak_rss_mb(server: RunningServer) -> float:
    for line in open(f"/proc/{server.process.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def big_bodies(server: RunningServer, clients: int, megabytes: int) -> dict:
    """`clients` concurrent JSON bodies of about `megabytes` MB each (more points than any model takes)."""
    row = "[" + ",".join(["0.5"] * 64) + "]"
    rows = max(1, megabytes * 1_000_000 // (len(row) + 1))
    body = ('{"model": "digits", "x": [' + ",".join([row] * rows) + "]}").encode()
    import threading

    statuses, rss_before = Counter(), peak_rss_mb(server)

    def post() -> None:
        try:
            statuses[httpx.post(f"{server.url}/encode", content=body, timeout=60,
                                headers={"content-type": "application/json"}).status_code] += 1
        except httpx.HTTPError as exc:
            statuses[type(exc).__name__] += 1

    threads = [threading.Thread(target=post) for _ in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"clients": clients, "body_mb": len(body) / 1e6, "statuses": dict(statuses),
            "wall_s": time.monotonic() - start, "peak_rss_mb_before": rss_before, "peak_rss_mb": peak_rss_mb(server)}


def oversized_header(server: RunningServer, megabytes: int) -> dict:
    """One request whose header is `megabytes` MB: the answer, how fast, and the server's CPU for it."""
    cpu, start = server.cpu_seconds(), time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        try:
            connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (megabytes << 20))
        except OSError:
            pass  # the server answered and stopped reading: expected
        answer = connection.recv(200)
    return {"megabytes": megabytes, "status_line": answer.split(b"\r\n", 1)[0].decode(),
            "seconds": time.monotonic() - start, "server_cpu_s": server.cpu_seconds() - cpu}
