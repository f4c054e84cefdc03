"""A naive peer of POST /loglik for a Gaussian model, the same shape as ../shared/peers/fastapi_orjson.py.

POST /loglik {"x": [[...], ...], "k": 1000, "seed": 0} -> {"k", "loglik", "stderr", "elbo"}, the contract's
importance-sampled estimate: eps (k, L) from np.random.default_rng(seed), shared by every point; all N·k
samples at once, on the event loop, in NumPy. No validation, no cache, no slicing; "model" is ignored.

    ENCODER_ONNX=models/digits/1/encoder.onnx DECODER_ONNX=models/digits/1/decoder.onnx \
        uvicorn --app-dir bench/peers loglik_orjson:app --port 8103
ORT_THREADS sets intra-op threads (default 1).
"""
import math
import os

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request, Response

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "1"))
options.inter_op_num_threads = 1
encoder = ort.InferenceSession(os.environ["ENCODER_ONNX"], options, providers=["CPUExecutionProvider"])
decoder = ort.InferenceSession(os.environ["DECODER_ONNX"], options, providers=["CPUExecutionProvider"])
app = FastAPI()


@app.post("/loglik")
async def loglik(request: Request) -> Response:
    body = orjson.loads(await request.body())
    x = np.asarray(body["x"], dtype=np.float32)  # (N, D)
    k, seed = body.get("k", 1000), body.get("seed", 0)
    mu, logvar = encoder.run(None, {"x": x})  # (N, L) each
    eps = np.random.default_rng(seed).standard_normal((k, mu.shape[1]))  # (k, L)
    z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps[None]  # (N, k, L)
    mean, out_logvar = decoder.run(None, {"z": z.reshape(-1, z.shape[2]).astype(np.float32)})  # (N*k, D) each
    mean, out_logvar = mean.reshape(*z.shape[:2], -1), out_logvar.reshape(*z.shape[:2], -1)  # (N, k, D)
    log_px_z = -0.5 * (math.log(2 * math.pi) + out_logvar + (x[:, None] - mean) ** 2 * np.exp(-out_logvar)).sum(-1)
    log_pz = -0.5 * (math.log(2 * math.pi) + z**2).sum(-1)  # (N, k)
    log_qz = -0.5 * (math.log(2 * math.pi) + logvar[:, None] + eps[None] ** 2).sum(-1)  # (N, k)
    log_w = log_px_z + log_pz - log_qz  # (N, k)
    top = log_w.max(1, keepdims=True)
    w = np.exp(log_w - top)  # (N, k), scaled by exp(top)
    answer = {"k": k, "loglik": (top[:, 0] + np.log(w.mean(1))).tolist(),
              "stderr": (w.std(1) / (math.sqrt(k) * w.mean(1))).tolist(), "elbo": log_w.mean(1).tolist()}
    return Response(orjson.dumps(answer), media_type="application/json")
