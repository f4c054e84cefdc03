"""The reference for bench/load.sh: the plainest FastAPI + ONNX Runtime encoder (an `async def` handler with a
pydantic body), as in ../shared/PEERS.md. No cache, no metrics, no checks beyond pydantic's."""

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

from service.settings import PROJECT_ROOT

session = ort.InferenceSession(str(PROJECT_ROOT / "models/digits/1/encoder.onnx"), providers=["CPUExecutionProvider"])
app = FastAPI()


class Body(BaseModel):
    model: str | None = None
    x: list[list[float]]


@app.post("/encode")
async def encode_batch(body: Body) -> dict:
    mu, logvar = session.run(None, {"x": np.asarray(body.x, dtype=np.float32)})
    return {"model": "digits:1", "mu": mu.tolist(), "logvar": logvar.tolist()}
