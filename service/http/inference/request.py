"""An inference request of the protocol, read: the JSON (the whole body, or, with the binary tensor extension,
its first `Inference-Header-Content-Length` bytes), its input tensors as arrays (tensors.py), the requested
outputs, and the request parameters split into the operation's own and the protocol's."""

import json
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from service.errors import MalformedInference, UnreadableBody
from service.http.inference.tensors import dtype_of, from_bytes, from_json

BINARY_SIZE, BINARY_OUTPUT, BINARY = "binary_data_size", "binary_data_output", "binary_data"
# Request parameters of the protocol (or of Triton's clients), not of an operation: binary_data_output (all
# outputs as binary), timeout (microseconds, Triton's: it shortens the request's deadline) and priority (ignored:
# every request is served in arrival order).
PROTOCOL_PARAMETERS = (BINARY_OUTPUT, "timeout", "priority")


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    shape: list[NonNegativeInt]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class _Output(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[_Tensor] = Field(default_factory=list)
    outputs: list[_Output] | None = None


@dataclass
class InferenceRequest:
    id: str | None
    arrays: dict[str, Any]  # input name -> its array, in the shape sent
    parameters: dict[str, Any]  # the operation's (k, seed, ...)
    outputs: list[tuple[str, bool]] | None  # (name, as binary) of each output asked for; None: all of them
    binary_output: bool  # the default for outputs not asked for by name
    timeout_s: float | None  # the protocol's timeout parameter, in seconds


def read_request(body: bytes, header_length: str | None) -> InferenceRequest:
    """The request in `body`; `header_length` is the Inference-Header-Content-Length header, if sent."""
    json_end = _json_length(body, header_length)
    header = body[:json_end]
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError:
        try:  # the standard library also reads NaN and Infinity (Python's json writes them), which x's check names
            document = json.loads(header)
        except (ValueError, RecursionError) as exc:
            raise UnreadableBody(f"body: the inference request is not valid JSON ({exc}); send the protocol's "
                                 "JSON object") from None
    if not isinstance(document, dict):
        raise UnreadableBody("body: the inference request must be a JSON object with inputs")
    try:
        request = _Request.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise UnreadableBody(f"inference request: {problems}") from None
    arrays = _arrays(request.inputs, body, json_end)
    parameters = dict(request.parameters)
    binary_output = parameters.pop(BINARY_OUTPUT, False)
    timeout = parameters.pop("timeout", None)
    parameters.pop("priority", None)
    if not isinstance(binary_output, bool):
        raise MalformedInference(f"parameters.{BINARY_OUTPUT}: must be true or false")
    if timeout is not None and (type(timeout) is not int or timeout <= 0):
        raise MalformedInference("parameters.timeout: must be a positive whole number of microseconds (or left out)")
    outputs = None
    if request.outputs is not None:
        outputs = []
        for index, output in enumerate(request.outputs):
            binary = output.parameters.get(BINARY, binary_output)
            if not isinstance(binary, bool):
                raise MalformedInference(f"outputs[{index}].parameters.{BINARY}: must be true or false")
            if output.parameters.get("classification") or output.parameters.get("class_count"):
                raise MalformedInference(f"outputs[{index}]: the classification extension is not served; ask for the "
                                   "tensor itself")
            outputs.append((output.name, binary))
    return InferenceRequest(request.id, arrays, parameters, outputs, binary_output,
                            None if timeout is None else timeout / 1e6)


def _json_length(body: bytes, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    if not (header_length.isdigit() and header_length.isascii()) or int(header_length) > len(body):
        raise UnreadableBody(f"Inference-Header-Content-Length: {header_length[:40]!r} must be the JSON header's "
                             f"length in bytes, at most the body's {len(body)}")
    return int(header_length)


def _arrays(inputs: list[_Tensor], body: bytes, offset: int) -> dict[str, Any]:
    """Each input's array: from its JSON data, or the next binary_data_size bytes after the JSON header."""
    arrays = {}
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}] ({tensor.name})"
        if tensor.name in arrays:
            raise MalformedInference(f"{where}: given twice; send each input once")
        dtype, shape = dtype_of(tensor.datatype, where), tuple(tensor.shape)
        size = tensor.parameters.get(BINARY_SIZE)
        if size is None:
            if tensor.data is None:
                raise UnreadableBody(f"{where}: no data; send it as data (JSON) or as binary data with "
                                     f"parameters.{BINARY_SIZE}")
            arrays[tensor.name] = from_json(tensor.data, shape, dtype, where)
            continue
        if type(size) is not int or size < 0 or offset + size > len(body):
            raise UnreadableBody(f"{where}: parameters.{BINARY_SIZE} is {size!r}, but {len(body) - offset} bytes "
                                 "of binary data are left in the body; send the tensor's byte count and its bytes")
        if tensor.data is not None:
            raise UnreadableBody(f"{where}: both data and binary data; send one")
        arrays[tensor.name] = from_bytes(body, offset, size, shape, dtype, where)
        offset += size
    if offset != len(body):
        raise UnreadableBody(f"body: {len(body) - offset} bytes after the last binary tensor; binary_data_size of "
                             "the inputs must add up to the bytes after the JSON header")
    return arrays

