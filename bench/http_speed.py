"""CPU serving speed over HTTP: our service next to naive peers, side by side in one run (issue 10's targets).

    .venv/bin/python bench/http_speed.py [--seconds 10] [--rounds 3] [--only encode,decode,...] [--no-write]
                                         [--variant 'batching on:VAE_BATCHING=on' ...] [--baseline LABEL:PATH ...]

Parts (--only takes any of them; `workers` also runs `encode`, its 1-worker baseline):
  encode, decode, loglik  single point under load: `wrk -t2 -c64 --latency`, every request a fresh random
                          point; ours (`python -m service`, one worker, in-process cache) alternating with
                          its naive peer, --rounds rounds, each run on a fresh server after a 2 s warm-up
  workers                 the /encode load on 2 server processes: VAE_WORKERS=2, the peer with --workers 2
  batch                   N=64 /encode and /loglik k=1000, JSON and .npy (answers as .npz), 4 httpx clients:
                          rows/s next to the service's own computation called in process on such batches
  cached                  /loglik k=1000 (1 point, 64 points), `wrk -t1 -c1`: computed (a fresh seed every
                          call) against answered from the cache (the same body every call)
--variant LABEL:VAR=VALUE,... adds a configuration of ours to the single-point runs (e.g. batching on);
--baseline LABEL:PATH another checkout of ours (an earlier commit: before and after, side by side).
Prints the tables and writes section "http_speed" of docs/BENCHMARKS.md (unless --no-write).
"""

import argparse
import datetime
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import in_process, servers  # noqa: E402
from bench.batches import RowPool, closed_loop  # noqa: E402
from bench.report import replace_section  # noqa: E402
from bench.wrk import WrkFigures, point_script, run_wrk, seeded_script  # noqa: E402
from modelrepo import load_manifest  # noqa: E402
from service.settings import Settings  # noqa: E402

NPY, NPZ = "application/x-npy", "application/x-npz"
PARTS = ("encode", "decode", "loglik", "workers", "batch", "cached")
WARM_UP_S = 2.0
BATCH_ROWS, BATCH_K, POINT_K = 64, 1000, 100
MANIFEST = load_manifest(ROOT / servers.MODEL)
DATA_SIZE = int(np.prod(MANIFEST.data_shape))
MODEL = MANIFEST.name
POINTS = {  # endpoint: (JSON before the numbers, JSON after them, how many numbers, their range)
    "encode": (f'{{"model":"{MODEL}","x":[[', "]]}", DATA_SIZE, (0.0, 1.0)),
    "decode": (f'{{"model":"{MODEL}","z":[[', "]]}", MANIFEST.latent_dim, (-2.0, 2.0)),
    "loglik": (f'{{"model":"{MODEL}","x":[[', f']],"k":{POINT_K}}}', DATA_SIZE, (0.0, 1.0)),
}


def load(server: servers.Server, script: str, path: str, seconds: float, connections: int, threads: int,
         count_hits: bool, timeout_s: float = 10.0) -> tuple[WrkFigures, int | None]:
    """A warm-up, then the measured wrk run; with it, when count_hits (ours, one worker: the counter is per
    process), the cache hits the server counted during the run."""
    run_wrk(server.url + path, script, WARM_UP_S, connections, threads, timeout_s)
    servers.wait_until_idle(server)
    hits_before = servers.cache_hits(server) if count_hits else 0
    figures = run_wrk(server.url + path, script, seconds, connections, threads, timeout_s)
    return figures, (servers.cache_hits(server) - hits_before if count_hits else None)


@dataclass
class Run:
    endpoint: str
    round: int
    server: str  # "ours", "ours, <variant>" or "peer <module>"
    workers: int
    figures: WrkFigures
    cache_hits: int | None  # counted by ours with one worker; None where not counted


def single_point(parts: list[str], rounds: int, seconds: float, variants: dict[str, dict],
                 baselines: dict[str, Path]) -> list[Run]:
    """wrk -t2 -c64 on a fresh server per run: ours, its variants, other checkouts of ours (baselines) and the peer
    alternating, round after round."""
    runs = []
    for round_number in range(1, rounds + 1):
        for endpoint in [part for part in POINTS if part in parts]:
            prefix, suffix, width, (low, high) = POINTS[endpoint]
            script = point_script(prefix, suffix, width, low, high)
            peer = f"peer {servers.PEERS[endpoint][1]}"
            stacks = [("ours", 1, lambda: servers.ours())]  # (server, workers, its context manager)
            stacks += [(f"ours, {label}", 1, lambda env=env, label=label: servers.ours(1, env, f"ours, {label}"))
                       for label, env in variants.items()]
            stacks += [(f"ours, {label}", 1, lambda code=code, label=label: servers.ours(1, None, f"ours, {label}", code))
                       for label, code in baselines.items()]
            stacks.append((peer, 1, lambda: servers.peer(endpoint)))
            if "workers" in parts and endpoint == "encode":
                stacks += [("ours", 2, lambda: servers.ours(2)), (peer, 2, lambda: servers.peer(endpoint, 2))]
            for label, workers, start in stacks:
                with start() as server:
                    count_hits = label != peer and workers == 1
                    figures, hits = load(server, script, f"/{endpoint}", seconds, 64, 2, count_hits)
                runs.append(Run(endpoint, round_number, label, workers, figures, hits))
                print(f"  /{endpoint} round {round_number}, {label}, {workers} worker(s): {figures.rate:,.0f} req/s, "
                      f"p99 {figures.p99_ms:.1f} ms", file=sys.stderr)
    return runs


def single_point_tables(runs: list[Run]) -> str:
    """The summary (medians over the rounds with their spread, ratios to the peer of the same round), every run,
    the scaling."""
    summary = ["| endpoint | server | req/s: median (min-max) | ours / peer, req/s: median (each round) "
               "| p99 ms: median (min-max) | p99 ours / peer: median (each round) |", "|---|---|---|---|---|---|"]
    for endpoint in dict.fromkeys(run.endpoint for run in runs):
        single = [run for run in runs if run.endpoint == endpoint and run.workers == 1]
        peer = {run.round: run.figures for run in single if run.server.startswith("peer")}
        for server in dict.fromkeys(run.server for run in single):
            mine = [run for run in single if run.server == server and run.round in peer]
            rates = [run.figures.rate for run in mine]
            p99s = [run.figures.p99_ms for run in mine]
            rate_ratios = [run.figures.rate / peer[run.round].rate for run in mine]
            p99_ratios = [run.figures.p99_ms / peer[run.round].p99_ms for run in mine]
            summary.append(
                f"| /{endpoint} | {server} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) | "
                f"{statistics.median(rate_ratios):.2f}x ({', '.join(f'{r:.2f}' for r in rate_ratios)}) | "
                f"{statistics.median(p99s):.2f} ({min(p99s):.2f}-{max(p99s):.2f}) | "
                f"{statistics.median(p99_ratios):.2f} ({', '.join(f'{r:.2f}' for r in p99_ratios)}) |")
    every = ["| endpoint | round | server | workers | req/s | p50 ms | p99 ms | non-2xx | socket errors | cache hits |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    every += [f"| /{r.endpoint} | {r.round} | {r.server} | {r.workers} | {r.figures.rate:,.0f} | "
              f"{r.figures.p50_ms:.2f} | {r.figures.p99_ms:.2f} | {r.figures.non_2xx} | {r.figures.socket_errors} | "
              f"{'-' if r.cache_hits is None else r.cache_hits} |" for r in runs]
    text = "\n".join(summary) + "\n\nEvery run:\n\n" + "\n".join(every)
    scaling = ["| server | 1 worker req/s | 2 workers req/s | scaling | p99 ms, 1 worker | p99 ms, 2 workers |",
               "|---|---|---|---|---|---|"]
    for server in dict.fromkeys(run.server for run in runs if run.workers == 2):
        figures = {n: [r.figures for r in runs if r.endpoint == "encode" and r.server == server and r.workers == n]
                   for n in (1, 2)}
        rate = {n: statistics.median(f.rate for f in runs_of) for n, runs_of in figures.items()}
        p99 = {n: statistics.median(f.p99_ms for f in runs_of) for n, runs_of in figures.items()}
        scaling.append(f"| {server} | {rate[1]:,.0f} | {rate[2]:,.0f} | {rate[2] / rate[1]:.2f}x | {p99[1]:.2f} | "
                       f"{p99[2]:.2f} |")
    if len(scaling) > 2:
        text += "\n\n### Two workers, single-point /encode (medians over the rounds)\n\n" + "\n".join(scaling)
    return text


def batch(seconds: float, threads: int, clients: int = 4) -> str:
    """N=64 requests through HTTP (JSON, .npy) next to the same computation in process, on the same batches."""
    settings = Settings(model_repository=ROOT / "models")
    engine = in_process.load_engine(ROOT / servers.MODEL, settings)
    pool = RowPool(1024, DATA_SIZE, max(threads, clients))
    cases = {  # endpoint: (the in-process computation, the request's fields besides x)
        "encode": (lambda x: in_process.encode(engine, x), {"model": MODEL}),
        "loglik": (lambda x: in_process.loglik(engine, x, BATCH_K, 0), {"model": MODEL, "k": BATCH_K}),
    }
    lines = ["| call | how | rows/s | calls | p50 / p99 ms per call | HTTP / in process | non-2xx | cache hits |",
             "|---|---|---|---|---|---|---|---|"]
    with servers.ours() as server:
        sessions = [httpx.Client(base_url=server.url, timeout=120) for _ in range(clients)]
        for endpoint, (compute, fields) in cases.items():
            name = f"POST /{endpoint} N={BATCH_ROWS}" + (f" k={BATCH_K}" if endpoint == "loglik" else "")
            closed_loop(lambda caller: compute(pool.rows[pool.pick(caller, BATCH_ROWS)]), WARM_UP_S, threads)
            local, _ = closed_loop(lambda caller: compute(pool.rows[pool.pick(caller, BATCH_ROWS)]), seconds, threads)
            local_rate = threads * BATCH_ROWS / statistics.mean(local)
            lines.append(f"| {name} | in process, {threads} threads | {local_rate:,.0f} | {len(local)} | "
                         f"{1e3 * np.median(local):.1f} / {1e3 * np.quantile(local, 0.99):.1f} | 1 | - | - |")
            for npy in (False, True):
                def call(caller: int, npy: bool = npy) -> bool:
                    picked = pool.pick(caller, BATCH_ROWS)
                    if npy:
                        response = sessions[caller].post(f"/{endpoint}", params=fields, content=pool.npy_body(picked),
                                                         headers={"content-type": NPY, "accept": NPZ})
                    else:
                        response = sessions[caller].post(f"/{endpoint}", content=pool.json_body(picked, fields),
                                                         headers={"content-type": "application/json"})
                    return response.is_success

                closed_loop(call, WARM_UP_S, clients)
                servers.wait_until_idle(server)
                hits_before = servers.cache_hits(server)
                timings, answered = closed_loop(call, seconds, clients)
                hits = servers.cache_hits(server) - hits_before
                rate = clients * BATCH_ROWS / statistics.mean(timings)
                lines.append(f"| {name} | {'.npy in, .npz out' if npy else 'JSON'}, {clients} httpx clients | "
                             f"{rate:,.0f} | {len(timings)} | {1e3 * np.median(timings):.1f} / "
                             f"{1e3 * np.quantile(timings, 0.99):.1f} | {rate / local_rate:.2f} | "
                             f"{answered.count(False)} | {hits} |")
        for session in sessions:
            session.close()
    return "\n".join(lines)


def cached(seconds: float) -> str:
    """/loglik k=1000 computed (a fresh seed every request) against the same request answered from the cache,
    both from one wrk connection: the median call of each."""
    rng = np.random.default_rng(1)
    lines = ["| request | computed: p50 ms (calls) | cached: p50 ms (calls) | computed / cached | cache hits "
             "(computed, cached) |", "|---|---|---|---|---|"]
    with servers.ours() as server:
        for rows in (1, BATCH_ROWS):
            x = orjson.dumps(np.round(rng.uniform(size=(rows, DATA_SIZE)), 4).tolist()).decode()
            prefix, suffix = f'{{"model":"{MODEL}","x":{x},"k":{BATCH_K},"seed":', "}"
            computed, computed_hits = load(server, seeded_script(prefix, suffix, fresh=True), "/loglik", seconds, 1,
                                           1, True, timeout_s=120)
            repeated, hits = load(server, seeded_script(prefix, suffix, fresh=False), "/loglik", seconds, 1, 1, True,
                                  timeout_s=120)
            lines.append(f"| POST /loglik N={rows} k={BATCH_K}, JSON | {computed.p50_ms:.2f} ({computed.requests}) | "
                         f"{repeated.p50_ms:.3f} ({repeated.requests}) | {computed.p50_ms / repeated.p50_ms:.0f}x | "
                         f"{computed_hits}, {hits} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[:2]  # "wrk <version>"
    return (f"{len(os.sched_getaffinity(0))} cores (`nproc`), {cpu}, Python {platform.python_version()}, "
            f"ONNX Runtime {ort.__version__}, {' '.join(wrk)}")


def parse_baseline(text: str) -> tuple[str, Path]:
    label, _, folder = text.rpartition(":")
    if not label or not (Path(folder) / "service" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"--baseline {text!r}: write LABEL:PATH, PATH a checkout of this project "
                                         "(e.g. `git worktree add /tmp/before HEAD~1`)")
    return label, Path(folder).resolve()


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    label, _, assignments = text.partition(":")
    env = dict(item.split("=", 1) for item in assignments.split(",") if "=" in item)
    if not label or not env or not all(name.startswith("VAE_") for name in env):
        raise argparse.ArgumentTypeError(f"--variant {text!r}: write LABEL:VAE_NAME=VALUE[,VAE_NAME=VALUE...]")
    return label, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of each run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of ours and the peer (default 3)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts (default: {','.join(PARTS)})")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="LABEL:VAE_X=V,...",
                        help="another configuration of ours in the single-point runs; repeatable")
    parser.add_argument("--baseline", type=parse_baseline, action="append", default=[], metavar="LABEL:PATH",
                        help="another checkout of ours (an earlier commit) in the single-point runs, side by side; "
                             "repeatable")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads calling the computation in process (default: the cores)")
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install wrk (Debian, Ubuntu) or brew install wrk")
    servers.exit_cleanly_on_sigterm()
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"--only: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if "workers" in parts and "encode" not in parts:
        parts.append("encode")  # the 1-worker baseline of the scaling
    servers.check_peers([part for part in parts if part in POINTS])
    overrides = sorted(f"{name}={value}" for name, value in os.environ.items()
                       if name.startswith("VAE_") and name not in servers.SET_FOR_OURS)
    command = shlex.join(["python", "bench/http_speed.py", *sys.argv[1:]])
    text = [f"## Serving speed over HTTP, ours and naive peers side by side\n\n`{command}` on "
            f"{datetime.date.today().isoformat()}: {machine()} (wrk on the same cores as the servers). Ours: "
            "`python -m service`, VAE_LOG_LEVEL=warning, no Redis (in-process cache), other settings at their "
            f"defaults{' except ' + ', '.join(overrides) if overrides else ''}. Peers: naive FastAPI apps "
            f"(orjson, one ONNX Runtime call with 1 intra-op thread on the event loop): `{servers.SHARED_PEERS}/"
            "fastapi_orjson.py` for /encode, `bench/peers/decode_orjson.py`, `bench/peers/loglik_orjson.py`. "
            f"Model `{MODEL}` ({DATA_SIZE} values, latent dim {MANIFEST.latent_dim}). Every request carries fresh "
            f"data; the cache-hit column is our own counter. Each run measures {args.seconds:g} s after a "
            f"{WARM_UP_S:g} s warm-up, on a server started for it."]
    if args.seconds < 10 or args.rounds < 3:
        text.append("**A short run, for checking the harness: not figures to quote.**")
    single = [part for part in parts if part in POINTS]
    if single:
        runs = single_point(parts, args.rounds, args.seconds, dict(args.variant), dict(args.baseline))
        text.append(f"### Single point under load: `wrk -t2 -c64 --latency`, {args.rounds} round(s), one worker "
                    "each unless said\n\n" + single_point_tables(runs))
    if "batch" in parts:
        text.append(f"### Batches of {BATCH_ROWS} points: rows/s through HTTP next to the service's own "
                    "computation called in process on the same kind of batches (the engine's encode; its /loglik "
                    f"with the service's settings)\n\nEach call: {BATCH_ROWS} rows drawn at random from a pool of "
                    "1024 (fresh data, no cache hits). Closed loops: each thread or httpx client calls, waits, calls "
                    "again; rows/s = rows / mean call time x threads. The HTTP figures include the httpx clients' "
                    "own work, on the same cores.\n\n" + batch(args.seconds, args.threads))
    if "cached" in parts:
        text.append(f"### A cached repeat of /loglik k={BATCH_K}: `wrk -t1 -c1`, a fresh seed every call (computed) "
                    "or the same body every call (cached)\n\n" + cached(args.seconds))
    section = "\n\n".join(text) + "\n"
    print(section)
    if not args.no_write:
        replace_section("http_speed", section)
        print("wrote section http_speed of docs/BENCHMARKS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
