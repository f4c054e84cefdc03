"""What drawing x from an autoregressive decoder costs: /sample and /decode take one decoder pass per position.

    .venv/bin/python bench/ar_sampling.py [--data-dim 196] [--hidden 256] [--latent 16] [--seconds 3]

The model is built here, by hand, with random weights: a MADE decoder (Germain et al. 2015) of one masked
hidden layer, h = relu(x W1 * M1 + z U + b1), logits = h W2 * M2 + z V + b2, Bernoulli over --data-dim
positions, and a linear encoder. `measure` times, in process (the engine the service calls, no HTTP):
drawing x for n latents at once (D + 1 decoder passes of n rows), and for comparison one teacher-forced
/loglik pass-equivalent (the engine's loglik, k samples per point); then POST /sample through HTTP. Writes section
"ar_sampling" of docs/BENCHMARKS.md.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import in_process  # noqa: E402
from bench.report import replace_section  # noqa: E402
from bench.serving import start_server_on_free_port  # noqa: E402
from modelrepo.likelihood import generator  # noqa: E402
from service.engine.sessions import providers_for  # noqa: E402
from service.settings import Settings  # noqa: E402

NAME = "made"


def made_decoder(data_dim: int, hidden: int, latent: int, seed: int = 0) -> onnx.ModelProto:
    """z [batch, latent], x [batch, data_dim] -> logits [batch, data_dim], output d reading x only before d."""
    rng = np.random.default_rng(seed)
    input_degree = np.arange(1, data_dim + 1)  # (D,)
    hidden_degree = rng.integers(1, data_dim, size=hidden)  # (H,) in 1..D-1
    mask_in = (hidden_degree[None, :] >= input_degree[:, None]).astype(np.float32)  # (D, H)
    mask_out = (input_degree[None, :] > hidden_degree[:, None]).astype(np.float32)  # (H, D)
    weights = {
        "W1": rng.normal(scale=1 / np.sqrt(data_dim), size=(data_dim, hidden)) * mask_in,
        "U": rng.normal(scale=1 / np.sqrt(latent), size=(latent, hidden)),
        "b1": np.zeros(hidden),
        "W2": rng.normal(scale=1 / np.sqrt(hidden), size=(hidden, data_dim)) * mask_out,
        "V": rng.normal(scale=1 / np.sqrt(latent), size=(latent, data_dim)),
        "b2": np.zeros(data_dim),
    }
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["xw"]), helper.make_node("MatMul", ["z", "U"], ["zu"]),
             helper.make_node("Add", ["xw", "zu"], ["a1"]), helper.make_node("Add", ["a1", "b1"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["hw"]),
             helper.make_node("MatMul", ["z", "V"], ["zv"]), helper.make_node("Add", ["hw", "zv"], ["a3"]),
             helper.make_node("Add", ["a3", "b2"], ["logits"])]
    graph = helper.make_graph(
        nodes, "made", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent]),
                        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", data_dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", data_dim])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def linear_encoder(data_dim: int, latent: int) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(scale=0.05, size=(data_dim, latent)).astype(np.float32), "W"),
             numpy_helper.from_array(np.full(latent, -1.0, np.float32), "logvar_bias"),
             numpy_helper.from_array(np.zeros((data_dim, latent), np.float32), "Z")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mu"]), helper.make_node("MatMul", ["x", "Z"], ["zero"]),
             helper.make_node("Add", ["zero", "logvar_bias"], ["logvar"])]
    graph = helper.make_graph(nodes, "encoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", data_dim])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", latent]) for n in ("mu", "logvar")],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def build(repository: Path, data_dim: int, hidden: int, latent: int) -> Path:
    import json

    folder = repository / NAME / "1"
    folder.mkdir(parents=True)
    onnx.save(linear_encoder(data_dim, latent), str(folder / "encoder.onnx"))
    onnx.save(made_decoder(data_dim, hidden, latent), str(folder / "decoder.onnx"))
    (folder / "manifest.json").write_text(json.dumps({
        "format": "vae-onnx/1", "name": NAME, "version": 1, "data_shape": [data_dim], "latent_dim": latent,
        "likelihood": {"type": "bernoulli", "autoregressive": True}, "encoder": "encoder.onnx",
        "decoder": "decoder.onnx"}))
    return folder


def best_of(function, seconds: float) -> float:
    """The fastest of repeated calls for up to `seconds` (at least two), after a warm-up."""
    function()
    best, start, calls = float("inf"), time.perf_counter(), 0
    while calls < 2 or time.perf_counter() - start < seconds:
        began = time.perf_counter()
        function()
        best, calls = min(best, time.perf_counter() - began), calls + 1
    return best


def measure(data_dim: int, hidden: int, latent: int, seconds: float, sizes: list[int]) -> None:
    repository = Path(tempfile.mkdtemp(prefix="ar-bench-"))
    folder = build(repository, data_dim, hidden, latent)
    settings = Settings(model_repository=repository)
    device = providers_for(settings.device)[0]
    engine = in_process.load_engine(folder, settings)
    lines = ["| what | n | time per request | decoder passes / s | x values drawn / s |", "|---|---|---|---|---|"]
    for n in sizes:
        z = generator(0).standard_normal((n, latent)).astype(np.float32)
        took = best_of(lambda: engine.decode(z, seed=1), seconds)  # x drawn given z, from the seed's noise
        lines.append(f"| in process: draw x given z ({data_dim + 1} passes) | {n} | {took * 1e3:.1f} ms | "
                     f"{(data_dim + 1) / took:.0f} | {n * data_dim / took / 1e6:.3f} M |")
    x = (generator(2).uniform(size=(16, data_dim)) < 0.3).astype(np.float32)
    took = best_of(lambda: engine.loglik(x, 64, 0), seconds)
    lines.append(f"| in process: /loglik teacher-forced, 16 points x k 64 (1 pass per slice) | 16 | {took * 1e3:.1f} ms "
                 f"| - | - |")
    os.environ.update(VAE_MODEL_REPOSITORY=str(repository), VAE_DEFAULT_MODEL=NAME)
    server, port = start_server_on_free_port()
    try:
        seeds = iter(range(10**9))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            n = 16

            def request():  # a fresh seed per call: computed, never a cache hit
                client.post("/sample", json={"n": n, "seed": next(seeds), "mode": "sample"}).raise_for_status()

            took = best_of(request, seconds)
            lines.append(f"| HTTP: POST /sample mode sample (JSON) | {n} | {took * 1e3:.1f} ms | "
                         f"{(data_dim + 1) / took:.0f} | {n * data_dim / took / 1e6:.3f} M |")
    finally:
        server.terminate()
        server.wait(30)
    table = "\n".join(lines)
    print(table)
    section = (f"## Sampling from an autoregressive decoder ({device})\n\n`python bench/ar_sampling.py --data-dim "
               f"{data_dim} --hidden {hidden} --latent {latent}` on {datetime.date.today().isoformat()}: "
               f"{platform.machine()}, {os.cpu_count()} cores, ONNX Runtime {ort.__version__}, provider {device}. "
               f"Model: a MADE decoder of one masked hidden layer ({data_dim}-{hidden}-{data_dim}, z of {latent} into "
               "both layers), Bernoulli, random weights, built by the script. Drawing x takes D + 1 decoder passes "
               "(one per position, one at the drawn x), each over all n rows of the request, so its cost grows as "
               f"D x (cost of one pass of n rows). Best call over {seconds:g} s after a warm-up.\n\n" + table)
    replace_section("ar_sampling", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dim", type=int, default=196)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256])
    args = parser.parse_args()
    measure(args.data_dim, args.hidden, args.latent, args.seconds, args.sizes)


if __name__ == "__main__":
    main()
