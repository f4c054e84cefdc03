"""JSON vs binary payloads (application/x-npy in, application/x-npz out) for batches of 256 points.

    .venv/bin/python bench/payloads.py [--seconds 2.0]

Starts `python -m service` on a free loopback port (in-process cache; each call sends fresh points, so none
is a cache hit) and times whole calls from one sequential httpx client, side by side in one run: the
client's own encoding and decoding (orjson / numpy.save, np.array / np.load) are in the figures, as a user
would see them. Writes section "payloads" of docs/BENCHMARKS.md.
"""

import argparse
import datetime
import io
import os
import platform
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402
from bench.serving import start_server_on_free_port  # noqa: E402

BATCH = 256
CASES = (  # path, model, array field, query parameters, data maker
    ("/encode", "digits", "x", {}, lambda rng: rng.uniform(size=(BATCH, 64)).astype(np.float32)),
    ("/decode", "digits-binary", "z", {}, lambda rng: rng.standard_normal((BATCH, 16)).astype(np.float32)),
    ("/loglik", "digits-binary", "x", {"k": 100}, lambda rng: (rng.uniform(size=(BATCH, 64)) < 0.3).astype(np.float32)),
)


def call_json(client, path, model, field, params, array, seed):
    body = orjson.dumps({"model": model, field: array, **params, **seed}, option=orjson.OPT_SERIALIZE_NUMPY)
    response = client.post(path, content=body, headers={"content-type": "application/json"}).raise_for_status()
    content = orjson.loads(response.content)
    arrays = {k: np.asarray(v) for k, v in content.items() if isinstance(v, list)}
    return len(body), len(response.content), arrays


def call_binary(client, path, model, field, params, array, seed):
    buffer = io.BytesIO()
    np.save(buffer, array)
    body = buffer.getvalue()
    response = client.post(path, content=body, params={"model": model, **params, **seed},
                           headers={"content-type": "application/x-npy", "accept": "application/x-npz"})
    response.raise_for_status()
    with np.load(io.BytesIO(response.content)) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return len(body), len(response.content), arrays


def timed(call, seconds: float) -> tuple[float, int, int]:
    """Mean seconds per call after a warm-up, and the request and response sizes."""
    sent, received = call(-1)[:2]  # the warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call(count)
        count += 1
    return (time.perf_counter() - start) / count, sent, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case and format")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    server, port = start_server_on_free_port()
    rows = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for path, model, field, params, make in CASES:
                pool = [make(rng) for _ in range(64)]
                figures = {}
                for name, call in (("JSON", call_json), ("binary", call_binary)):
                    def one(i, call=call, name=name):  # fresh points, or for /loglik a fresh seed: no cache hits
                        if path == "/loglik":
                            seed = {"seed": 2 + i + (10**6 if name == "binary" else 0)}
                            return call(client, path, model, field, params, pool[i % len(pool)], seed)
                        return call(client, path, model, field, params, pool[i % len(pool)] + np.float32(1e-3 * i), {})

                    figures[name] = timed(one, args.seconds)
                    figures[name + " answer"] = call(client, path, model, field, params, pool[0],
                                                     {"seed": 1} if path == "/loglik" else {})[2]
                for key, value in figures["JSON answer"].items():
                    if key in figures["binary answer"]:
                        assert np.allclose(value, figures["binary answer"][key], rtol=1e-6), key
                (js, js_in, js_out), (bn, bn_in, bn_out) = figures["JSON"], figures["binary"]
                rows.append(f"| POST {path} | {model} | {BATCH}{', k=' + str(params['k']) if params else ''} | "
                            f"{js * 1e3:.2f} | {bn * 1e3:.2f} | {js / bn:.2f}x | {js_in:,} / {js_out:,} | "
                            f"{bn_in:,} / {bn_out:,} |")
    finally:
        server.terminate()
        server.wait(20)
    table = "\n".join(["| call | model | batch | JSON (ms per call) | binary (ms per call) | JSON / binary "
                       "| JSON bytes in / out | binary bytes in / out |", "|---|---|---|---|---|---|---|---|", *rows])
    print(table)
    section = (f"## JSON vs binary payloads, batches of {BATCH}\n\n`python bench/payloads.py --seconds "
               f"{args.seconds:g}` on {datetime.date.today().isoformat()}: {platform.machine()}, {os.cpu_count()} "
               "cores, one uvicorn worker (`python -m service`, CPU provider), one sequential httpx client; whole "
               "calls including the client's own encoding and decoding. JSON: an orjson body, the response parsed "
               "into arrays; binary: a numpy.save body (`application/x-npy`, parameters in the query string), "
               "the response an `application/x-npz` read with np.load. Both formats answer the same numbers (checked "
               "in the run).\n\n" + table)
    replace_section("payloads", section)


if __name__ == "__main__":
    main()
