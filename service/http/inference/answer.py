"""The inference response: the operation's answer (http.operations) as the protocol's outputs and parameters.

Arrays become output tensors with the contract's datatypes (models.output_datatype), as JSON `data` (flat,
row-major) or, for outputs asked for as binary, raw little-endian bytes after a JSON header whose length the
`Inference-Header-Content-Length` header gives. Scalars (model, k, method, threshold, fpr) become response
parameters; the reference's summary travels as JSON text.
"""

import numpy as np
import orjson

from service.errors import MalformedInference
from service.http.inference.models import ProtocolModel, output_datatype
from service.http.inference.request import BINARY_SIZE, InferenceRequest
from service.http.inference.tensors import DATATYPES
from service.http.operations import Content
from service.http.replies import Reply

HEADER_LENGTH = "Inference-Header-Content-Length"
OCTET_STREAM = "application/octet-stream"


def inference_reply(model: ProtocolModel, version: str, request: InferenceRequest, content: Content) -> Reply:
    arrays = {name: value for name, value in content.items() if isinstance(value, (np.ndarray, list))}
    parameters = {name: orjson.dumps(value).decode() if isinstance(value, dict) else value
                  for name, value in content.items() if name not in arrays}
    wanted = request.outputs if request.outputs is not None else [(name, request.binary_output) for name in arrays]
    outputs, blobs = [], []
    for index, (name, binary) in enumerate(wanted):
        if name not in arrays:
            raise MalformedInference(f"outputs[{index}]: {name!r} is not in this answer of {model.protocol_name} "
                                     f"(it holds {', '.join(arrays)}; GET /v2/models/{model.protocol_name} lists "
                                     "its outputs)")
        datatype = output_datatype(name)
        array = np.ascontiguousarray(arrays[name], dtype=DATATYPES[datatype])
        tensor = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = array.tobytes()
            tensor["parameters"] = {BINARY_SIZE: len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.reshape(-1)
        outputs.append(tensor)
    document = {"model_name": model.protocol_name, "model_version": version,
                **({"id": request.id} if request.id is not None else {}),
                "parameters": parameters, "outputs": outputs}
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return Reply(header)
    return Reply(b"".join([header, *blobs]), OCTET_STREAM, headers={HEADER_LENGTH: str(len(header))})
