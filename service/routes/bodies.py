"""Request bodies and responses in either format: JSON (the default) or NumPy binary.

A request's array goes as JSON (inside the object) or as an application/x-npy body with the other fields in
the query string; `Accept: application/x-npz` asks for every field of the response in one .npz archive.
The raw body is parsed here with orjson and validated by the request model: FastAPI's own body handling
costs more than a small model's whole run.
"""

import json
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service.errors import InvalidInput, UnreadableBody, UnsupportedMediaType
from service.inputs import refuse_booleans
from service.payloads import NPY, NPZ, read_npy, write_npz
from service.responses import ArrayJSONResponse

BINARY = {"type": "string", "format": "binary"}


async def read_request(request: Request, params_schema: type[BaseModel], schema: type[BaseModel],
                       array_field: str) -> tuple[BaseModel, Any]:
    """The validated parameters and the array: a list from a JSON body, or an ndarray from a .npy body.

    schema is params_schema plus the array field; query values are text, so they are validated leniently.
    """
    media_type = _media_type(request)
    query = dict(request.query_params)
    body = await request.body()
    if media_type == NPY:
        return _validate(params_schema, query, strict=False), read_npy(body, array_field)
    if not _is_json(media_type):
        raise UnsupportedMediaType(f"content-type: {media_type!r} is not taken; send application/json, or the "
                                   f"array '{array_field}' as {NPY} with the other fields in the query string")
    content = _parse_json(body)
    repeated = sorted(set(query) & set(content))
    if repeated:
        raise InvalidInput(f"{', '.join(repeated)}: given in both the query string and the body; give it once")
    if query:
        content = {**_validate(params_schema, query, strict=False).model_dump(include=set(query)), **content}
    params = _validate(schema, content, strict=True)
    array = getattr(params, array_field)
    if b"true" in body or b"false" in body:  # the walk costs only the rare body that has a JSON boolean at all
        refuse_booleans(array, array_field)
    return params, array


async def read_json(request: Request, schema: type[BaseModel]) -> BaseModel:
    """A JSON body, validated strictly, for a route that takes no array (so no .npy body either)."""
    media_type = _media_type(request)
    if not _is_json(media_type):
        raise UnsupportedMediaType(f"content-type: {media_type!r} is not taken; send the fields as a JSON object "
                                   "with content-type: application/json")
    return _validate(schema, _parse_json(await request.body()), strict=True)


def respond(request: Request, content: dict) -> Response:
    """JSON unless the client accepts application/x-npz."""
    if NPZ in request.headers.get("accept", ""):
        return Response(write_npz(content), media_type=NPZ)
    return ArrayJSONResponse(content)


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


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


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
