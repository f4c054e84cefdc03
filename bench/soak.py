"""Soak: mixed calls at saturation for a while, with the server's memory sampled; not a CI test.

    .venv/bin/python bench/soak.py [--seconds 600] [--clients 32]

32 clients call /encode, /decode, /sample, /loglik (JSON and npy, fresh and repeated data: cache hits and
misses) as fast as they are answered. RSS is sampled every 5 s; growth is measured from the end of a warm-up
(the first 20% of the run, when ONNX Runtime's arenas and the cache fill) to the end. Writes the "soak" section
of docs/RELIABILITY.md.
"""

import argparse
import asyncio
import datetime
import io
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402
from tests.service.serving import running_server  # noqa: E402

DOC = ROOT / "docs" / "RELIABILITY.md"


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request(i: int, rng: np.random.Generator) -> tuple[str, dict]:
    repeated = i % 3 == 0  # a third of the calls repeat earlier data: cache hits
    seed = int(rng.integers(50)) if repeated else int(rng.integers(1 << 40))
    points = np.random.default_rng(seed)
    kind = i % 5
    if kind == 0:
        return "/encode", {"json": {"x": points.random((8, 64)).tolist(), "samples": 2, "seed": seed}}
    if kind == 1:
        return "/decode", {"json": {"model": "digits-binary", "z": points.standard_normal((16, 16)).tolist()}}
    if kind == 2:
        return "/sample", {"json": {"n": 16, "seed": seed, "mode": "sample"}}
    if kind == 3:
        x = (points.random((4, 64)) > 0.5).astype(np.float32)
        buffer = io.BytesIO()
        np.save(buffer, x)
        return "/loglik", {"content": buffer.getvalue(), "params": {"model": "digits-binary", "k": 500, "seed": seed},
                           "headers": {"content-type": "application/x-npy", "accept": "application/x-npz"}}
    return "/loglik", {"json": {"model": "digits", "x": points.random((2, 64)).tolist(), "k": 1000, "seed": seed}}


async def client_loop(url: str, index: int, end: float, counts: Counter) -> None:
    rng = np.random.default_rng(index)
    async with httpx.AsyncClient(timeout=60) as client:
        i = index
        while time.monotonic() < end:
            path, kwargs = request(i, rng)
            try:
                counts[(await client.post(url + path, **kwargs)).status_code] += 1
            except httpx.HTTPError as exc:
                counts[type(exc).__name__] += 1
            i += 1


async def soak(url: str, pid: int, seconds: float, clients: int) -> tuple[Counter, list[tuple[float, float]]]:
    counts, samples, start = Counter(), [], time.monotonic()
    end = start + seconds

    async def sampler() -> None:
        while time.monotonic() < end:
            samples.append((time.monotonic() - start, rss_mb(pid)))
            await asyncio.sleep(5)

    await asyncio.gather(sampler(), *(client_loop(url, i, end, counts) for i in range(clients)))
    samples.append((time.monotonic() - start, rss_mb(pid)))
    return counts, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    with running_server(Path(tempfile.mkdtemp(prefix="soak-"))) as server:
        idle = rss_mb(server.process.pid)
        counts, samples = asyncio.run(soak(server.url, server.process.pid, args.seconds, args.clients))
    warm = next(rss for at, rss in samples if at >= 0.2 * args.seconds)
    final = samples[-1][1]
    errors = sum(n for status, n in counts.items() if status != 200)
    text = (f"Measured {datetime.date.today()} on {platform.node() or 'this machine'} ({os.cpu_count()} cores), "
            f"default settings, with `.venv/bin/python bench/soak.py --seconds {args.seconds:g} --clients "
            f"{args.clients}`:\n\n| calls | not 200 | RSS idle | RSS after warm-up ({0.2 * args.seconds:.0f} s) | "
            f"RSS at the end | growth after warm-up |\n|---|---|---|---|---|---|\n"
            f"| {sum(counts.values())} ({sum(counts.values()) / args.seconds:.0f}/s) | {errors} {dict(counts)} | "
            f"{idle:.0f} MB | {warm:.0f} MB | {final:.0f} MB | {(final - warm) / warm:+.1%} |\n\n"
            "RSS every minute (MB): " + ", ".join(f"{rss:.0f}" for at, rss in samples[::12]) + "\n")
    print(text)
    replace_section("soak", text, DOC)


if __name__ == "__main__":
    main()
