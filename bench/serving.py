"""In-process computation vs the same work through HTTP, for /encode and /loglik on the shipped models.

    .venv/bin/python bench/serving.py [--seconds 1.0]

Starts `python -m service` on a free loopback port (in-process cache; every request carries fresh data, so
none is answered from the cache), then times each case in both ways, side by side, in one run.
"""

import argparse
import datetime
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import in_process  # noqa: E402
from bench.report import replace_section  # noqa: E402
from service.settings import Settings  # noqa: E402

ENCODE_BATCHES = (1, 64, 256)
LOGLIK_CASES = ((1, 100), (1, 1000), (64, 100), (64, 1000), (256, 1000))


def timed(call, payloads, seconds: float) -> tuple[float, int]:
    """Mean seconds per call after one warm-up, each payload used once, for up to `seconds`."""
    call(payloads[0])
    count, start = 0, time.perf_counter()
    for payload in payloads[1:]:
        call(payload)
        count += 1
        if time.perf_counter() - start >= seconds:
            break
    return (time.perf_counter() - start) / count, count


def post(client: httpx.Client, path: str):
    """Send pre-serialised JSON, so the client's own encoding is not timed."""
    headers = {"content-type": "application/json"}
    return lambda body: client.post(path, content=body, headers=headers).raise_for_status()


def distinct_bodies(make, count: int) -> list[bytes]:
    return [orjson.dumps(make(i), option=orjson.OPT_SERIALIZE_NUMPY) for i in range(count)]


def start_server(port: int) -> subprocess.Popen:
    env = {**os.environ, "VAE_PORT": str(port), "VAE_REDIS_URL": "", "VAE_LOG_LEVEL": "warning"}
    env.pop("VAE_REDIS_URL")
    server = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the service did not become ready")


def start_server_on_free_port() -> tuple[subprocess.Popen, int]:
    """`python -m service` on a free loopback port (the environment's VAE_* settings apply), once ready."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return start_server(port), port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case and side")
    args = parser.parse_args()
    settings = Settings()
    engines = {}
    for name in ("digits", "digits-binary"):
        engines[name] = in_process.load_engine(settings.model_repository / name / "1", settings)
    rng = np.random.default_rng(0)
    server, port = start_server_on_free_port()
    rows = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for batch in ENCODE_BATCHES:
                pool = max(16, 20000 // batch)  # more distinct requests than fit in the time: no cache hits
                xs = [rng.uniform(size=(batch, 64)).astype(np.float32) for _ in range(pool)]
                local, _ = timed(lambda x: in_process.encode(engines["digits"], x), xs, args.seconds)
                bodies = distinct_bodies(lambda i: {"model": "digits", "x": xs[i]}, pool)
                remote, calls = timed(post(client, "/encode"), bodies, args.seconds)
                rows.append(("POST /encode", "digits", batch, "-", local, remote, batch / remote, "points/s", calls))
            for batch, k in LOGLIK_CASES:
                pool = max(8, 2_000_000 // (batch * k))
                xs = [(rng.uniform(size=(batch, 64)) < 0.3).astype(np.float32) for _ in range(min(pool, 64))]
                engine = engines["digits-binary"]
                local, _ = timed(lambda x: in_process.loglik(engine, x, k, 0), xs, args.seconds)
                # The same points with a new seed per call: the same work, never a cache hit.
                bodies = distinct_bodies(lambda i: {"model": "digits-binary", "x": xs[i % len(xs)].astype(np.int8),
                                                    "k": k, "seed": i}, pool)
                remote, calls = timed(post(client, "/loglik"), bodies, args.seconds)
                rows.append(("POST /loglik", "digits-binary", batch, k, local, remote, batch * k / remote,
                             "samples/s", calls))
    finally:
        server.terminate()
        server.wait(20)
    header = ("| call | model | batch | k | in process (ms) | through HTTP (ms) | HTTP / in process "
              "| HTTP throughput | HTTP calls timed |\n|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {c} | {m} | {b} | {k} | {lo * 1e3:.3f} | {re * 1e3:.3f} | {re / lo:.2f}x | {tp:,.0f} {unit} | {n} |"
             for c, m, b, k, lo, re, tp, unit, n in rows]
    table = "\n".join([header, *lines])
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"ONNX Runtime {ort.__version__} ({engines['digits'].describe()['provider']}), one uvicorn worker, one "
               "sequential "
               "httpx client (its own overhead is in the HTTP column)")
    section = (f"## In process vs through HTTP\n\n`python bench/serving.py` on "
               f"{datetime.date.today().isoformat()}: {machine}. Each figure is the mean time per call over "
               f"{args.seconds:g} s of calls after a warm-up; both sides ran in the same run. In process = the "
               "engine the service calls, without HTTP, JSON or the cache.\n\n" + table + "\n")
    print(table)
    replace_section("serving", section)

if __name__ == "__main__":
    main()
