"""What /score costs next to /loglik of the same k, without and with per-feature scores (issue 19).

    .venv/bin/python bench/score_cost.py [--models digits,digits-binary,mnist-binary] [--rounds 5] [--seconds 3]

Each model is served in process (create_app on a copy of the repository, through the HTTP tier and the data
plane, no network), with the shipped reference.json where the version has one, else a stand-in reference with
k = 1000 and seed 0 (only k and seed decide the cost). Every call sends fresh points (binarised or jittered rows
of the model's own kind), so nothing is answered from the cache. Rounds alternate the three calls; each call's
time is the mean over `--seconds`; the table gives the median over rounds and each ratio per round. Writes
section "score_cost" of docs/BENCHMARKS.md.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402

POINTS = {"mnist-binary": 16}  # points per call; 64 for the others


def fresh_points(manifest: dict, count: int, rng: np.random.Generator) -> list:
    size = int(np.prod(manifest["data_shape"]))
    if manifest["likelihood"]["type"] == "bernoulli":
        return (rng.random((count, size)) < 0.2).astype(np.float32).tolist()
    return rng.uniform(0, 1, (count, size)).astype(np.float32).tolist()


def timed(call, seconds: float) -> float:
    call()  # warm
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        call()
        calls += 1
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,digits-binary,mnist-binary")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    os.environ.setdefault("VAE_LOG_LEVEL", "warning")
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="score-cost-"))
    rows, stand_ins = [], []
    try:
        for name in args.models.split(","):
            version = max(int(v.name) for v in (args.repository / name).iterdir() if v.name.isdigit())
            shutil.copytree(args.repository / name / str(version), work / name / str(version))
            reference = work / name / str(version) / "reference.json"
            if reference.exists():
                k, seed = (json.loads(reference.read_text())[key] for key in ("k", "seed"))
            else:
                k, seed = 1000, 0
                stand_ins.append(name)
                reference.write_text(json.dumps({"format": "vae-reference/1", "score": "loglik", "k": k,
                                                 "seed": seed, "scores": list(np.linspace(-200, 0, 199)),
                                                 "data": "stand-in for a benchmark"}))
        client = TestClient(create_app(Settings(model_repository=work)))
        client.__enter__()
        rng = np.random.default_rng(0)
        for name in args.models.split(","):
            manifest = json.loads(next((work / name).glob("*/manifest.json")).read_text())
            count = POINTS.get(name, 64)
            k = json.loads(next((work / name).glob("*/reference.json")).read_text())["k"]
            seed = json.loads(next((work / name).glob("*/reference.json")).read_text())["seed"]

            def post(path, **fields):
                response = client.post(path, json={"model": name, "x": fresh_points(manifest, count, rng), **fields})
                assert response.status_code == 200, response.text

            calls = {"loglik": lambda: post("/loglik", k=k, seed=seed), "score": lambda: post("/score", fpr=0.05),
                     "features": lambda: post("/score", fpr=0.05, features=True)}
            times = {call: [] for call in calls}
            for _ in range(args.rounds):
                for call, function in calls.items():
                    times[call].append(timed(function, args.seconds))
            rows.append((name, count, k, times))
            print(name, {call: f"{statistics.median(t) * 1e3:.1f} ms" for call, t in times.items()}, flush=True)
        client.__exit__(None, None, None)
    finally:
        shutil.rmtree(work)

    lines = [
        "## /score next to /loglik of the same k (issue 19)",
        "",
        f"`python bench/score_cost.py --rounds {args.rounds} --seconds {args.seconds:g}` on "
        f"{datetime.date.today()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; in process (create_app, through the HTTP tier and the data plane), fresh "
        "points every call (no cache hits), the three calls alternating in each round. ms per call: median over "
        "the rounds; ratios per round." + (f" Stand-in references (k = 1000, seed 0) for: {', '.join(stand_ins)}."
                                          if stand_ins else ""),
        "",
        "| model | points per call | k | /loglik ms | /score ms | /score, features ms | score / loglik, each round "
        "| features / loglik, each round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, count, k, times in rows:
        ratio = lambda call: ", ".join(f"{a / b:.2f}" for a, b in zip(times[call], times["loglik"]))
        median = {call: statistics.median(t) * 1e3 for call, t in times.items()}
        lines.append(f"| {name} | {count} | {k} | {median['loglik']:.1f} | {median['score']:.1f} | "
                     f"{median['features']:.1f} | {ratio('score')} | {ratio('features')} |")
    lines += ["", "/score runs /loglik's own job (the same draws and cache entries) and adds the conformal p-values, "
              "a sorted search over the reference: its cost is /loglik's. Per-feature scores are a second pass on "
              "the two graphs in float64 on the host (every -log p(x_d|z) weighted by the self-normalised "
              "importance weights), beside the fused /loglik graph."]
    text = "\n".join(lines)
    print(text)
    replace_section("score_cost", text)


if __name__ == "__main__":
    main()
