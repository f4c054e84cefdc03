"""The Open Inference Protocol's routes (KServe v2, Triton's HTTP API; CONTRACT section 5): server and model
metadata, health and readiness, and inference, each operation of a version a model `<name>.<operation>`.

Inference answers through the very operations of the service's own routes (http.operations), after the same
front (keys, hosts, body limits, the deadline), so the numbers, the cache entries and the metrics are theirs.
Every refusal is the protocol's `{"error": ...}` with the status the service's own API gives.
"""

import logging
import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.types import Scope

from service.dataplane.budget import budget
from service.dataplane.dataplane import DataPlane
from service.errors import MalformedInference, ServiceError, UnsupportedMediaType
from service.http.codecs import validate_fields
from service.http.deps import DataPlaneDep
from service.http.inference.answer import HEADER_LENGTH, inference_reply
from service.http.inference.models import ProtocolModel, metadata
from service.http.inference.request import read_request
from service.http.replies import INTERNAL_ERROR, Reply, error_reply, protocol_error, validation_reply

PROTOCOL = "/v2"
PROTOCOL_PROBES = PROTOCOL + "/health/"  # answered whatever the load, no key needed, as /health/*
EXTENSIONS = ["binary_tensor_data"]
log = logging.getLogger(__name__)


class ProtocolError(BaseModel):
    error: str = Field(..., description="What was wrong and how to fix it.")


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(..., description="-1 where the request decides the length (the batch).")


class ModelMetadata(BaseModel):
    name: str = Field(..., examples=["digits.loglik"])
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(..., description="The request parameters the operation takes: datatype, "
                                       "default.")


class TensorData(BaseModel):
    name: str = Field(..., examples=["x"])
    shape: list[int] = Field(..., examples=[[1, 4]])
    datatype: str = Field(..., description="FP32, FP64, FP16, INT8..INT64, UINT8..UINT64 or BOOL.", examples=["FP32"])
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: the tensor's bytes after the "
                                              "JSON header, instead of data.")
    data: list[Any] | None = Field(None, description="The values, flat in row-major order (or nested).")


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="binary_data: true for raw bytes after the header.")


INFERENCE_REQUEST = {  # the request's JSON (its nested schemas inline: they are not components of the description)
    "type": "object", "title": "InferenceRequest",
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "description": "The operation's own fields (k, seed, samples, n, "
                       "temperature, mode, fpr, features) and the protocol's binary_data_output, timeout "
                       "(microseconds), priority."},
        "inputs": {"type": "array", "items": TensorData.model_json_schema(),
                   "description": "x, or z for decode; none for sample."},
        "outputs": {"type": "array", "items": RequestedOutput.model_json_schema()},
    },
    "examples": [{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.0, 1.0, 1.0, 0.0]}],
                  "parameters": {"k": 100}}],
}
INFER_BODY = {"requestBody": {"required": True, "description": "An inference request: JSON, or (binary tensor "
                              "extension) a JSON header of Inference-Header-Content-Length bytes and the tensors' "
                              "bytes after it.", "content": {
    "application/json": {"schema": INFERENCE_REQUEST},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] = Field(..., description="The answer's scalars: model, and k, method, threshold, "
                                       "fpr where the operation has them.")
    outputs: list[dict[str, Any]]


ERRORS: dict[int | str, dict] = {status: {"model": ProtocolError, "description": text} for status, text in {
    400: "The request breaks the protocol (JSON, shapes, datatypes, binary sizes).",
    404: "No such protocol model or version.",
    409: "score: the version has no reference /score can use.",
    413: "Request body over VAE_MAX_BODY_BYTES.",
    422: "A value cannot be used (shape, range, a parameter); the message names it.",
    503: "The version failed to load, or the deadline passed.",
}.items()}
router = APIRouter(prefix=PROTOCOL, tags=["open inference protocol"], responses=ERRORS)
ModelName = Annotated[str, Path(description="<name>.<operation>, the operation one of encode, decode, sample, "
                                            "loglik, score.", examples=["digits.loglik"])]
Version = Annotated[str, Path(description="A version of the model, e.g. 1.")]


def _refusal(exc: Exception, request: Request) -> Response:
    reply = validation_reply(exc) if isinstance(exc, RequestValidationError) else error_reply(exc, request.scope)
    return protocol_error(reply).response()


@router.get("")
async def get_server_metadata() -> dict:
    """The server's name, version and protocol extensions."""
    return {"name": "vae-serve", "version": "1.0.0", "extensions": EXTENSIONS}


@router.get("/health/live")
async def check_server_live() -> dict:
    """The process answers."""
    return {"live": True}


@router.get("/health/ready", responses={503: {"description": "Not ready: no model serves (yet)."}})
async def check_server_ready(request: Request) -> Response:
    """Ready when at least one model serves, as /health/ready."""
    dataplane = getattr(request.app.state, "dataplane", None)
    ready = dataplane is not None and (await dataplane.readiness())[0]
    ready = ready and not getattr(request.app.state, "stopping", False)  # SIGTERM came: as /health/ready, 503
    return Reply(b'{"ready":true}' if ready else b'{"ready":false}', status=200 if ready else 503).response()


def _engine(dataplane: DataPlane, model: ProtocolModel):
    engine = dataplane.model(model.reference)
    problem = dataplane.scoring_problem(engine) if model.operation == "score" else None
    return engine, problem


@router.get("/models/{model_name}", response_model=ModelMetadata)
async def get_model_metadata(model_name: ModelName, request: Request, dataplane: DataPlaneDep) -> Response:
    """The operation's inputs, outputs and parameters, for the model's highest version."""
    return _metadata(request, dataplane, model_name, None)


@router.get("/models/{model_name}/versions/{version}", response_model=ModelMetadata)
async def get_model_version_metadata(model_name: ModelName, version: Version, request: Request,
                                     dataplane: DataPlaneDep) -> Response:
    """The operation's inputs, outputs and parameters, for this version."""
    return _metadata(request, dataplane, model_name, version)


def _metadata(request: Request, dataplane: DataPlane, model_name: str, version: str | None) -> Response:
    try:
        model = ProtocolModel.parse(model_name, version)
        engine = dataplane.model(model.reference)
        versions = [engine.version] if version is not None else dataplane.loaded_versions(model.name)
        has_background = engine.reference is not None and engine.reference.background is not None
        return Reply(_json(metadata(model, engine, versions, has_background))).response()
    except ServiceError as exc:
        return _refusal(exc, request)


@router.get("/models/{model_name}/ready", responses={400: {"description": "Known, not ready (the reason given)."}})
async def check_model_ready(model_name: ModelName, request: Request, dataplane: DataPlaneDep) -> Response:
    """200 when the model's highest version serves the operation; 400 with the reason when it cannot (score
    without a usable reference)."""
    return _readiness(request, dataplane, model_name, None)


@router.get("/models/{model_name}/versions/{version}/ready",
            responses={400: {"description": "Known, not ready (the reason given)."}})
async def check_model_version_ready(model_name: ModelName, version: Version, request: Request,
                                    dataplane: DataPlaneDep) -> Response:
    """200 when this version serves the operation; 400 with the reason when it cannot."""
    return _readiness(request, dataplane, model_name, version)


def _readiness(request: Request, dataplane: DataPlane, model_name: str, version: str | None) -> Response:
    try:
        model = ProtocolModel.parse(model_name, version)
        engine, problem = _engine(dataplane, model)
    except ServiceError as exc:
        return _refusal(exc, request)
    answer = {"name": model_name, "ready": problem is None, **({"error": problem} if problem else {})}
    return Reply(_json(answer), status=200 if problem is None else 400).response()


@router.post("/models/{model_name}/infer", response_model=InferenceResponse, openapi_extra=INFER_BODY)
async def infer(model_name: ModelName, request: Request, dataplane: DataPlaneDep) -> Response:
    """Run the operation on the model's highest version: JSON, or a JSON header and binary tensors."""
    return (await answer_inference(dataplane, request.scope, await request.body(), model_name, None)).response()


@router.post("/models/{model_name}/versions/{version}/infer", response_model=InferenceResponse,
             openapi_extra=INFER_BODY)
async def infer_version(model_name: ModelName, version: Version, request: Request,
                        dataplane: DataPlaneDep) -> Response:
    """Run the operation on this version."""
    return (await answer_inference(dataplane, request.scope, await request.body(), model_name, version)).response()


INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
INFER_ROUTES = {route.path: route for route in router.routes if route.path.endswith("/infer")}


def inference_route(path: str) -> tuple[Any, str, str | None] | None:
    """For the front, which answers inference itself (as it does the data routes, past FastAPI's layers): the
    route (what the metrics label it with), the model and the version of an inference path; None for any other."""
    match = INFER_PATH.fullmatch(path)
    if match is None:
        return None
    model_name, version = match.groups()
    template = PROTOCOL + ("/models/{model_name}/versions/{version}/infer" if version else "/models/{model_name}/infer")
    return INFER_ROUTES[template], model_name, version


async def answer_inference(dataplane: DataPlane, scope: Scope, body: bytes, model_name: str,
                           version: str | None) -> Reply:
    """The inference response, or the refusal in the protocol's form."""
    headers = dict(scope["headers"])
    try:
        model = ProtocolModel.parse(model_name, version)
        encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").lower()
        if encoding != "identity":
            raise UnsupportedMediaType(f"Content-Encoding: {encoding!r} is not taken; send the request uncompressed")
        length = headers.get(HEADER_LENGTH.lower().encode())
        parsed = read_request(body, None if length is None else length.decode("latin-1"))
        if parsed.timeout_s is not None:
            budget().tighten(parsed.timeout_s)
        spec = model.spec
        expected = [spec.array] if spec.array else []
        if sorted(parsed.arrays) != expected:
            wanted = f"one input, {spec.array}" if spec.array else "no inputs"
            raise MalformedInference(f"inputs: {model.protocol_name} takes {wanted}; got "
                                     f"{', '.join(parsed.arrays) or 'none'}")
        if "model" in parsed.parameters:
            raise MalformedInference("parameters.model: the URL names the model; leave it out")
        params = _parameters(spec.params, {**parsed.parameters, "model": model.reference})
        content = await spec.run(dataplane, params, parsed.arrays.get(spec.array) if spec.array else None)
        served_version = content["model"].rpartition(":")[2]
        return inference_reply(model, served_version, parsed, content)
    except RequestValidationError as exc:
        return protocol_error(validation_reply(exc))
    except ServiceError as exc:
        return protocol_error(error_reply(exc, scope))
    except Exception:  # a bug, not the client's doing: logged with its traceback, answered in the protocol's form
        log.exception("%s %s failed", scope["method"], scope["path"])
        return protocol_error(INTERNAL_ERROR)


def _parameters(schema: type[BaseModel], values: dict) -> BaseModel:
    """The operation's parameters, validated as the service's own API validates them; errors name parameters.X."""
    try:
        return validate_fields(schema, values, strict=True)
    except RequestValidationError as exc:
        errors = [{**error, "loc": ("parameters", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def _json(content: dict) -> bytes:
    return orjson.dumps(content)
