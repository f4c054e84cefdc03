"""The Open Inference Protocol against the service's own API: the same calls on the same server, side by side.

    .venv/bin/python bench/protocol_speed.py [--seconds 5] [--rounds 3] [--clients 4] [--no-write]

Calls: /encode of 1 point and of 64, /loglik of 64 points at k = 1000, on `digits` (servers.MODEL); each in four
forms: our JSON, our .npy in / .npz out, the protocol's JSON, the protocol's binary tensors both ways (what
tritonclient.http sends by default). Each form is `--clients` httpx clients in a closed loop, fresh rows every call
(no cache hit), the forms in a rotated order each round; the table gives each form's rows/s (median over rounds)
and its ratio to our JSON in the same round. Writes section "protocol_speed" of docs/BENCHMARKS.md.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
from pathlib import Path

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report, servers  # noqa: E402
from bench.batches import RowPool, closed_loop  # noqa: E402
from modelrepo import load_manifest  # noqa: E402

MANIFEST = load_manifest(ROOT / servers.MODEL)
MODEL, WIDTH = MANIFEST.name, int(np.prod(MANIFEST.data_shape))
NPY, NPZ, HEADER = "application/x-npy", "application/x-npz", "Inference-Header-Content-Length"
CALLS = {"encode N=1": ("encode", 1, {}), "encode N=64": ("encode", 64, {}),
         "loglik N=64 k=1000": ("loglik", 64, {"k": 1000})}
FORMS = ("ours, JSON", "ours, .npy / .npz", "protocol, JSON", "protocol, binary")


def request(form: str, operation: str, rows: np.ndarray, picked: np.ndarray, pool: RowPool, fields: dict):
    """(path, body, headers) of one call."""
    if form == "ours, JSON":
        return f"/{operation}", pool.json_body(picked, {"model": MODEL, **fields}), {"content-type": "application/json"}
    if form == "ours, .npy / .npz":
        query = "&".join(f"{k}={v}" for k, v in {"model": MODEL, **fields}.items())
        return f"/{operation}?{query}", pool.npy_body(picked), {"content-type": NPY, "accept": NPZ}
    path = f"/v2/models/{MODEL}.{operation}/infer"
    tensor = {"name": "x", "shape": [len(rows), WIDTH], "datatype": "FP32"}
    if form == "protocol, JSON":
        body = orjson.dumps({"inputs": [{**tensor, "data": rows.reshape(-1)}], "parameters": fields},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        return path, body, {"content-type": "application/json"}
    data = rows.tobytes()
    header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(data)}}],
                           "parameters": {**fields, "binary_data_output": True}})
    return path, header + data, {"content-type": "application/octet-stream", HEADER: str(len(header))}


def measure(seconds: float, rounds: int, clients: int) -> str:
    pool = RowPool(1024, WIDTH, clients)
    rates: dict[tuple[str, str], list[float]] = {}
    latencies: dict[tuple[str, str], list[float]] = {}
    failures: dict[tuple[str, str], int] = {}
    with servers.ours() as server:
        sessions = [httpx.Client(base_url=server.url, timeout=120) for _ in range(clients)]
        for round_number in range(rounds):
            for label, (operation, count, fields) in CALLS.items():
                order = FORMS[round_number % len(FORMS):] + FORMS[:round_number % len(FORMS)]
                for form in order:
                    def call(caller: int, form: str = form) -> bool:
                        picked = pool.pick(caller, count)
                        path, body, headers = request(form, operation, pool.rows[picked], picked, pool, fields)
                        return sessions[caller].post(path, content=body, headers=headers).is_success

                    closed_loop(call, 1.0, clients)
                    servers.wait_until_idle(server)
                    timings, answered = closed_loop(call, seconds, clients)
                    key = (label, form)
                    rates.setdefault(key, []).append(clients * count / statistics.mean(timings))
                    latencies.setdefault(key, []).extend(timings)
                    failures[key] = failures.get(key, 0) + answered.count(False)
    lines = ["| call | form | rows/s (median of rounds) | / ours JSON, each round | p50 / p99 ms | failed |",
             "|---|---|---|---|---|---|"]
    for label in CALLS:
        base = rates[(label, FORMS[0])]
        for form in FORMS:
            key = (label, form)
            ratios = ", ".join(f"{r / b:.2f}" for r, b in zip(rates[key], base))
            lines.append(f"| {label} | {form} | {statistics.median(rates[key]):,.0f} | {ratios} | "
                         f"{1e3 * np.median(latencies[key]):.1f} / {1e3 * np.quantile(latencies[key], 0.99):.1f} | "
                         f"{failures[key]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    table = measure(args.seconds, args.rounds, args.clients)
    text = (f"### The Open Inference Protocol next to our own API\n\n`python bench/protocol_speed.py --seconds "
            f"{args.seconds:g} --rounds {args.rounds} --clients {args.clients}` on {datetime.date.today()} "
            f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; one server, "
            f"{args.clients} httpx clients in a closed loop on the same machine, fresh rows every call). Model "
            f"{MODEL}:{MANIFEST.version}.\n\n{table}")
    print(text)
    if not args.no_write:
        report.replace_section("protocol_speed", text)
        print(f"wrote section protocol_speed of {report.DOC}")


if __name__ == "__main__":
    main()
