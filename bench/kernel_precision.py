"""The kernel tier's accuracy per shipped model and precision: the largest difference in log p(x) from float64.

    .venv/bin/python bench/kernel_precision.py [--models models] [--only digits,mnist-binary]

For every factorised model under models/ (latest version) and every VAE_KERNEL_PRECISION (fp16, bf16, fp32 and
fp16-last-fp32: fp16 hidden layers, the last layer with the likelihood in fp32), the tier is loaded as the service
loads it (VAE_KERNEL_TIER=on: on the CPU that is Triton's interpreter, which should compute what the GPU computes
up to the order of float32 sums, not yet compared on a GPU; no tolerance, so that every precision is measured) and
scored on the points of its check at load (engine.kernels.tier.verification_points: 16 points drawn from the model, k = 64, seed 0). Columns:
the largest difference from float64 (both graphs widened to float64, tests/service/float64_graphs.py), from the
float32 ONNX graphs (what the check at load compares, VAE_KERNEL_TOLERANCE_NATS), and which precision the default
rule serves. Writes section "kernel_precision" of docs/BENCHMARKS.md; on a GPU, with TRITON_INTERPRET=0 (the
kernels compiled for it), section "kernel_precision_gpu".
"""

import argparse
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: the CPU has no CUDA

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from modelrepo import load_manifest  # noqa: E402
from modelrepo.contract import CATEGORICAL_LATENT  # noqa: E402
from modelrepo.likelihood import likelihood_for, prior_for  # noqa: E402
from service.engine.engine import ModelEngine  # noqa: E402
from service.engine.kernels import tier  # noqa: E402
from service.engine.options import EngineOptions  # noqa: E402
from service.engine.sessions import CPU  # noqa: E402
from tests.service.float64_graphs import Float64Model  # noqa: E402

PRECISIONS = ("fp16", "bf16", "fp32", "fp16-last-fp32")


def latest_versions(models: Path) -> list[Path]:
    folders = []
    for model in sorted(p for p in models.iterdir() if p.is_dir()):
        versions = sorted((v for v in model.iterdir() if v.is_dir() and v.name.isdigit()), key=lambda v: int(v.name))
        folders += versions[-1:]
    return folders


def measure(folder: Path) -> dict:
    """{precision: (from float64, from the float32 graphs, layout)}, {"graphs": float32 graphs from float64}; or
    {"refused": why} for a model the tier does not take."""
    manifest = load_manifest(folder)
    graphs = ModelEngine.open(folder, EngineOptions([CPU], kernel_tier="off", loglik_graph="separate"))
    if manifest.latent.type == CATEGORICAL_LATENT or manifest.likelihood.autoregressive:
        probe = ModelEngine.open(folder, EngineOptions([CPU], kernel_tier="on"))
        return {"refused": probe.describe()["kernel_tier"]}
    x = tier.verification_points(graphs.decode, prior_for(manifest.prior, manifest.latent_shape),
                                 likelihood_for(manifest.likelihood.type))
    exact, _ = Float64Model(folder).loglik(x, tier.VERIFY_K, 0)
    onnx32 = graphs.loglik(x, tier.VERIFY_K, 0)["loglik"]
    rows = {"graphs": float(np.abs(onnx32 - exact).max())}
    for precision in PRECISIONS:
        engine = ModelEngine.open(folder, EngineOptions([CPU], kernel_tier="on", kernel_precision=precision,
                                                        kernel_tolerance_nats=math.inf))
        if engine.describe()["tier"] != "triton":
            rows[precision] = (math.nan, math.nan, engine.describe()["kernel_tier"])
            continue
        ours = engine.loglik(x, tier.VERIFY_K, 0)["loglik"]
        layout = engine.describe()["loglik_graph"].rsplit(", ", 1)[-1].rstrip(")")  # "triton kernels (fp32, ...)"
        rows[precision] = (float(np.abs(ours - exact).max()), float(np.abs(ours - onnx32).max()), layout)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--only", default="", help="comma-separated model names (default: all)")
    args = parser.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    began = time.perf_counter()
    lines = ["| model | layout | float32 graphs | " + " | ".join(PRECISIONS) + " | served by default |",
             "|---|---|---|" + "---|" * len(PRECISIONS) + "---|"]
    tolerance = EngineOptions([CPU]).kernel_tolerance_nats
    for folder in latest_versions(args.models):
        if wanted and folder.parent.name not in wanted:
            continue
        rows = measure(folder)
        name = f"{folder.parent.name}/{folder.name}"
        if "refused" in rows:
            lines.append(f"| {name} | not served: {rows['refused']} |" + " |" * (len(PRECISIONS) + 2))
            print(lines[-1], flush=True)
            continue
        cells = [f"{rows[p][0]:.1e} ({rows[p][1]:.1e})" for p in PRECISIONS]
        default = tier.default_precision({p: rows[p][1] for p in PRECISIONS}, tolerance)
        lines.append(f"| {name} | {rows['fp32'][2]} | {rows['graphs']:.1e} | " + " | ".join(cells)
                     + f" | {default or 'ONNX Runtime'} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    import torch
    import triton

    interpreted = os.environ["TRITON_INTERPRET"] == "1"
    where = "in its interpreter (TRITON_INTERPRET=1)" if interpreted else f"on {torch.cuda.get_device_name()}"
    section = (f"## Kernel tier precision per shipped model{'' if interpreted else ' (GPU)'}\n\n"
               f"`python bench/kernel_precision.py` on {datetime.date.today().isoformat()}: {platform.machine()}, "
               f"{os.cpu_count()} cores, Triton {triton.__version__} {where}, torch "
               f"{torch.__version__}, {time.perf_counter() - began:.0f} s. Each cell: the largest difference in "
               "log p(x) (nats) over the check's 16 points drawn from the model (k = 64, seed 0) from float64 (both "
               "graphs widened to float64, onnx.reference), and in brackets from the float32 ONNX graphs, which the "
               f"check at load compares with VAE_KERNEL_TOLERANCE_NATS ({tolerance:g}). Precisions: the decoder's "
               "matmul operands (float32 accumulation; the first layer reads z in float32); fp16-last-fp32: fp16 "
               "hidden layers, the last layer fused with the likelihood in fp32. \"float32 graphs\": ONNX Runtime's "
               "float32 answer from float64. Default (VAE_KERNEL_PRECISION=auto): the first of "
               f"{', '.join(tier.AUTO_PRECISIONS)} that passes the check.\n\n" + table)
    print(table)
    from bench.report import replace_section

    replace_section("kernel_precision" if interpreted else "kernel_precision_gpu", section)


if __name__ == "__main__":
    main()
