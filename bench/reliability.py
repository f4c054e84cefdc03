"""The reliability scenarios at the issue's scale, against `python -m service` on this machine; the table goes
into docs/RELIABILITY.md (section "overload").

    .venv/bin/python bench/reliability.py

The same scenarios, smaller, are tests (tests/service/test_overload.py, test_faults.py) run by `make test`.
"""

import datetime
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402
from tests.service import scenarios  # noqa: E402
from tests.service.serving import RestartableRedis, running_server  # noqa: E402

DOC = ROOT / "docs" / "RELIABILITY.md"


def drain(log_dir: Path) -> dict:
    with running_server(log_dir) as server:
        answers = []
        request = threading.Thread(target=lambda: answers.append(httpx.post(f"{server.url}/loglik", timeout=60, json={
            "model": "digits-binary", "x": scenarios.binary_points(64, 0), "k": 5000})))
        request.start()
        time.sleep(0.5)
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(60)
        request.join(60)
        return {"in_flight_status": answers[0].status_code if answers else None, "exit_code": code,
                "seconds_to_exit": time.monotonic() - start}


def redis_restart(log_dir: Path) -> dict:
    redis_server = RestartableRedis()
    try:
        with running_server(log_dir, redis_url=redis_server.url) as server:
            return scenarios.redis_killed_under_load(server, redis_server.restart, clients=16, seconds=15.0)
    finally:
        redis_server.close()


def main() -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="reliability-"))
    rows = []
    with running_server(log_dir) as server:
        burst = scenarios.burst(server, clients=256, n=16, k=5000)
        rows.append(("256 clients, heavy /loglik (16 points, k = 5000 each)",
                     f"{burst['statuses']}; slowest answer {burst['max_latency_s']:.1f} s; /health/live max "
                     f"{burst['live_max_s'] * 1000:.0f} ms over {burst['live_count']} probes; 429 without "
                     f"Retry-After: {burst['shed_without_retry_after']}"))
        time.sleep(2)
        header = scenarios.oversized_header(server, 120)
        rows.append(("a 120 MB request header", f"{header['status_line']} after {header['seconds']:.2f} s, "
                     f"{header['server_cpu_s']:.2f} s of server CPU"))
        bodies = scenarios.big_bodies(server, clients=32, megabytes=30)
        rows.append(("32 concurrent 30 MB JSON bodies", f"{bodies['statuses']} in {bodies['wall_s']:.1f} s; peak RSS "
                     f"{bodies['peak_rss_mb_before']:.0f} -> {bodies['peak_rss_mb']:.0f} MB"))
        start = time.monotonic()
        deadline = httpx.post(f"{server.url}/loglik", headers={"X-Request-Timeout": "0.5"}, timeout=30, json={
            "model": "digits-binary", "x": scenarios.binary_points(400, 0), "k": 5000})
        rows.append(("X-Request-Timeout: 0.5 on 2 M importance samples",
                     f"{deadline.status_code} after {time.monotonic() - start:.2f} s"))
    with running_server(log_dir) as server:
        abandoned = scenarios.abandon(server, clients=64, n=16, k=5000, hold_s=1.0)
        rows.append(("64 heavy /loglik clients hang up after 1 s",
                     f"server CPU {abandoned['cpu_share_2s_after']:.0%} of a core 2-3 s later; "
                     f"{abandoned['cancelled']:.0f} counted cancelled, {abandoned['counted_200']:.0f} answered"))
    with running_server(log_dir) as server:
        slow = scenarios.slowloris(server, connections=500, seconds=14.0)
        rows.append(("500 slowloris connections for 14 s (VAE_HEADER_TIMEOUT_S = 10)",
                     f"{slow['slow_closed']} closed by {slow['slow_closed_by_s']:.1f} s; ordinary /encode: "
                     f"{slow['ordinary_answered']} answered, slowest {slow['ordinary_max_s'] * 1000:.0f} ms"))
    drained = drain(log_dir)
    rows.append(("SIGTERM with a 2 s /loglik in flight", f"in-flight answer {drained['in_flight_status']}, exit "
                 f"code {drained['exit_code']} after {drained['seconds_to_exit']:.1f} s"))
    redis = redis_restart(log_dir)
    rows.append(("Redis SIGKILLed and restarted under 16 clients for 15 s",
                 f"{redis['statuses']}; cache hits {redis['hits_at_restart']:.0f} at the restart, "
                 f"{redis['hits_at_end']:.0f} at the end"))
    table = "\n".join(f"| {what} | {result} |" for what, result in rows)
    text = (f"Measured {datetime.date.today()} on {platform.node() or 'this machine'} ({os.cpu_count()} cores, "
            f"{platform.processor() or platform.machine()}), default settings, shipped models, with "
            f"`.venv/bin/python bench/reliability.py`:\n\n| scenario | result |\n|---|---|\n{table}\n")
    print(text)
    replace_section("overload", text, DOC)


if __name__ == "__main__":
    main()
