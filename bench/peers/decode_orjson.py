"""A naive peer of POST /decode, the same shape as ../shared/peers/fastapi_orjson.py (the /encode yardstick).

One async endpoint, POST /decode {"z": [[...], ...]} -> the decoder's outputs by name ("mean", "logvar" for
a Gaussian model): the raw body parsed with orjson, one ONNX Runtime call on the event loop, the answer
dumped with orjson. No validation, no cache, no metrics. "model" and any other field are ignored.

    DECODER_ONNX=models/digits/1/decoder.onnx uvicorn --app-dir bench/peers decode_orjson:app --port 8102
ORT_THREADS sets intra-op threads (default 1).
"""
import os

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request, Response

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "1"))
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["DECODER_ONNX"], options, providers=["CPUExecutionProvider"])
output_names = [output.name for output in session.get_outputs()]
app = FastAPI()


@app.post("/decode")
async def decode(request: Request) -> Response:
    z = np.asarray(orjson.loads(await request.body())["z"], dtype=np.float32)
    outputs = session.run(None, {"z": z})
    return Response(orjson.dumps({name: value.tolist() for name, value in zip(output_names, outputs)}),
                    media_type="application/json")
