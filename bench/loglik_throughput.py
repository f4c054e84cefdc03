"""Importance samples per second for /loglik on the reference model, on whatever device ONNX Runtime uses.

    .venv/bin/python bench/loglik_throughput.py build  [--repository bench/.models]
    .venv/bin/python bench/loglik_throughput.py measure [--repository bench/.models] [--points 256] [--k 1000]

The reference model is an MNIST-size MLP VAE, 784-512-512-32 with a Bernoulli decoder and random weights,
exported through training/ (`build`, needs torch; a machine without it can be handed the built folder).
`measure` times, side by side in one run: the compute path (the engine the service calls, no HTTP: its
sessions and likelihood code) on the fused graph in fp32 and fp16 and on the two-graph float64 path, then on the kernel
tier (service/engine/kernels: Triton, `gpu` extra) in fp16, fp16-last-fp32, bf16 and fp32 where a CUDA device
is there (the tier's rows say why not otherwise; --kernel-tier on runs them in Triton's interpreter on the CPU:
very slow); then
whole HTTP requests (`python -m service`, batches of --points, .npy in and .npz out) on the fused fp32 graph.
Accuracy is the largest difference in nats from the float64 path. Writes section "loglik" of
docs/BENCHMARKS.md. On a GPU machine, the one command (target: >= 150 M importance samples/s for the tier):

    .venv/bin/python bench/loglik_throughput.py build && .venv/bin/python bench/loglik_throughput.py measure
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
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import in_process  # noqa: E402
from bench.report import replace_section  # noqa: E402
from bench.serving import start_server_on_free_port  # noqa: E402
from service.engine.sessions import providers_for  # noqa: E402
from service.settings import Settings  # noqa: E402

NAME = "mnist-mlp"


def build(repository: Path) -> None:
    import torch

    from training.config import ModelConfig
    from training.export import export_model
    from training.model import VAE

    torch.manual_seed(0)
    vae = VAE(ModelConfig(data_shape=(784,), latent_dim=32, hidden=(512, 512), likelihood="bernoulli"))
    print(export_model(vae, repository, NAME, 1, force=True))


def rate(function, samples: int, seconds: float) -> tuple[float, object]:
    """Importance samples per second: the best of repeated calls for up to `seconds`, after a warm-up."""
    result = function()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - began)
    return samples / best, result


def measure(repository: Path, points: int, k: int, seconds: float, kernel_tier: str = "auto") -> None:
    folder = repository / NAME / "1"
    settings = Settings(model_repository=repository)
    device = providers_for(settings.device)[0]
    x = (np.random.default_rng(0).uniform(size=(points, 784)) < 0.3).astype(np.float32)
    rows, answers = [], {}
    for label, graph, precision in (("fused graph, fp32", "fused", "fp32"), ("fused graph, fp16 decoder", "fused", "fp16"),
                                    ("two graphs, float64 likelihood on the host", "separate", "fp32"),
                                    *((f"kernel tier (Triton), {p}", "kernels", p)
                                      for p in ("fp16", "fp16-last-fp32", "bf16", "fp32"))):
        if graph == "kernels":
            engine = in_process.load_engine(folder, settings, kernel_tier=kernel_tier, kernel_precision=precision)
            served = engine.describe()
            if served["tier"] != "triton":  # no GPU or extra, or its check at load failed: the reason
                rows.append((label, float("nan"), served["kernel_tier"]))
                continue
        else:
            engine = in_process.load_engine(folder, settings, loglik_graph=graph, precision=precision,
                                            kernel_tier="off")
            served = engine.describe()
        if graph == "fused" and served["loglik_graph"].startswith("separate"):  # the fused graph failed: fell back
            rows.append((label, float("nan"), served["loglik_graph"]))
            continue
        speed, answer = rate(lambda: in_process.loglik(engine, x, k, 0), points * k, seconds)
        answers[label] = answer["loglik"]
        rows.append((label, speed, served["loglik_graph"]))
    reference = answers["two graphs, float64 likelihood on the host"]
    os.environ.update(VAE_MODEL_REPOSITORY=str(repository), VAE_DEFAULT_MODEL=NAME, VAE_LOGLIK_GRAPH="fused",
                      VAE_KERNEL_TIER="off",
                      VAE_MAX_K=str(max(k, 10000)), VAE_MAX_LOGLIK_SAMPLES=str(max(points * k, 2_000_000)))
    server, port = start_server_on_free_port()
    try:
        buffer = io.BytesIO()
        np.save(buffer, x)
        body, seed = buffer.getvalue(), iter(range(10**9))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            def request():  # a new seed per call: the same work, never a cache hit
                response = client.post("/loglik", content=body, params={"k": k, "seed": next(seed)},
                                       headers={"content-type": "application/x-npy", "accept": "application/x-npz"})
                response.raise_for_status()
                return np.load(io.BytesIO(response.content))["loglik"]

            http_speed, _ = rate(request, points * k, seconds)
    finally:
        server.terminate()
        server.wait(30)
    fused_speed = rows[0][1]
    lines = ["| path | importance samples / s | vs the compute path (fused fp32) | largest difference from float64 (nats) |",
             "|---|---|---|---|"]
    for label, speed, scoring in rows:
        diff = np.abs(answers[label] - reference).max() if label in answers else float("nan")
        note = "" if label in answers else f" (not run: {scoring})"
        lines.append(f"| compute path: {label}{note} | {speed / 1e6:.2f} M | {speed / fused_speed:.2f}x | {diff:.2e} |")
    lines.append(f"| HTTP: POST /loglik, {points} points, .npy in / .npz out, fused fp32 | {http_speed / 1e6:.2f} M "
                 f"| {http_speed / fused_speed:.2f}x | - |")
    table = "\n".join(lines)
    print(table)
    section = (f"## /loglik throughput on the reference model ({device})\n\n`python bench/loglik_throughput.py "
               f"measure --points {points} --k {k}` on {datetime.date.today().isoformat()}: {platform.machine()}, "
               f"{os.cpu_count()} cores, ONNX Runtime {ort.__version__}, provider {device}. Model: 784-512-512-32 "
               "MLP VAE, Bernoulli, random weights (`build`). Each figure is the best call over "
               f"{seconds:g} s after a warm-up, all in one run; K = {k}, N = {points}.\n\n" + table)
    replace_section("loglik", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "measure"])
    parser.add_argument("--repository", type=Path, default=ROOT / "bench" / ".models")
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--kernel-tier", choices=["auto", "on"], default="auto",
                        help="on: run the kernel tier in Triton's interpreter where there is no GPU (very slow)")
    args = parser.parse_args()
    if args.action == "build":
        build(args.repository)
    else:
        measure(args.repository, args.points, args.k, args.seconds, args.kernel_tier)


if __name__ == "__main__":
    main()
