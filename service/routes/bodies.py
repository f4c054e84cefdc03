"""Request bodies and responses in either format: JSON (the default) or NumPy binary.

A request's array goes as JSON (inside the object) or as an application/x-npy body with the other fields in
the query string; `Accept: application/x-npz` asks for every field of the response in one .npz archive.
The raw body is parsed here with orjson and validated by the request model: FastAPI's own body handling
costs more than a small model's whole run.
"""

import json
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.types import Send

from service.errors import InvalidInput, UnreadableBody, UnsupportedMediaType
from service.inputs import refuse_booleans
from service.payloads import NPY, NPZ, read_npy, write_npz

BINARY = {"type": "string", "format": "binary"}


@dataclass(frozen=True, slots=True)
class Call:
    """What a data route reads of a request: taken from the raw ASGI scope by the direct lane
    (service.routes.direct), or from a Starlette Request when the routes are mounted in a FastAPI app alone."""

    media_type: str  # the content-type without parameters, lower case; application/json when absent
    query: dict[str, str]
    body: bytes
    accept: str

    @classmethod
    def of(cls, content_type: str | None, query: dict[str, str], body: bytes, accept: str | None) -> "Call":
        media_type = (content_type or "application/json").split(";")[0].strip().lower()
        return cls(media_type, query, body, accept or "")


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole response, sent as two ASGI messages (or wrapped in a Starlette Response)."""

    body: bytes
    media_type: str = "application/json"
    status: int = 200
    headers: dict[str, str] | None = None

    async def send(self, send: Send) -> None:
        headers = [(b"content-type", self.media_type.encode()), (b"content-length", str(len(self.body)).encode())]
        headers += [(name.lower().encode(), value.encode()) for name, value in (self.headers or {}).items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})

    def response(self) -> Response:
        return Response(self.body, self.status, self.headers, self.media_type)


def parse_request(call: Call, params_schema: type[BaseModel], schema: type[BaseModel],
                  array_field: str) -> tuple[BaseModel, Any]:
    """The validated parameters and the array: a list from a JSON body, or an ndarray from a .npy body.

    schema is params_schema plus the array field; query values are text, so they are validated leniently.
    """
    if call.media_type == NPY:
        return _validate(params_schema, call.query, strict=False), read_npy(call.body, array_field)
    if not _is_json(call.media_type):
        raise UnsupportedMediaType(f"content-type: {call.media_type!r} is not taken; send application/json, or the "
                                   f"array '{array_field}' as {NPY} with the other fields in the query string")
    content = _parse_json(call.body)
    if call.query:
        repeated = sorted(set(call.query) & set(content))
        if repeated:
            raise InvalidInput(f"{', '.join(repeated)}: given in both the query string and the body; give it once")
        content = {**_validate(params_schema, call.query, strict=False).model_dump(include=set(call.query)),
                   **content}
    params = _validate(schema, content, strict=True)
    array = getattr(params, array_field)
    if b"true" in call.body or b"false" in call.body:  # the walk costs only the rare body with a JSON boolean
        refuse_booleans(array, array_field)
    return params, array


def parse_json_request(call: Call, schema: type[BaseModel]) -> BaseModel:
    """A JSON body, validated strictly, for a route that takes no array (so no .npy body either)."""
    if not _is_json(call.media_type):
        raise UnsupportedMediaType(f"content-type: {call.media_type!r} is not taken; send the fields as a JSON "
                                   "object with content-type: application/json")
    return _validate(schema, _parse_json(call.body), strict=True)


def reply(call: Call, content: dict) -> Reply:
    """JSON unless the client accepts application/x-npz."""
    if NPZ in call.accept:
        return Reply(write_npz(content), NPZ)
    return Reply(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY))


def body_documentation(schema: type[BaseModel], array_field: str, description: str) -> dict:
    """openapi_extra for a route that reads its body itself: both media types, and the query parameters."""
    json_schema = schema.model_json_schema(ref_template="#/components/schemas/{model}")
    parameters = [
        {"name": name, "in": "query", "required": False, "schema": field,
         "description": f"With an {NPY} body only: {field.get('description', name)}"}
        for name, field in json_schema["properties"].items() if name != array_field
    ]
    return {
        "parameters": parameters,
        "requestBody": {"required": True, "description": description, "content": {
            "application/json": {"schema": json_schema},
            NPY: {"schema": {**BINARY, "description": f"numpy.save of the array '{array_field}'; the other "
                                                      "fields go in the query string."}},
        }},
    }


def json_body_documentation(schema: type[BaseModel], description: str) -> dict:
    """openapi_extra for a route that reads a JSON body itself with read_json."""
    json_schema = schema.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": json_schema}}}}


def binary_response(description: str) -> dict:
    return {200: {"content": {NPZ: {"schema": {**BINARY, "description": description}}}}}


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _parse_json(body: bytes) -> dict:
    try:
        content = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # the standard library also reads NaN and Infinity, which the field checks then name
            content = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise UnreadableBody(f"body: not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(content, dict):
        raise InvalidInput("body: must be a JSON object of the request's fields")
    return content


def _validate(schema: type[BaseModel], content: dict, strict: bool) -> BaseModel:
    try:
        return schema.model_validate(content, strict=strict)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
