"""Request and reply codecs: JSON (the default) or NumPy binary in, JSON or .npz out.

A request's array goes as JSON (inside the object) or as an application/x-npy body with the other fields in
the query string; `Accept: application/x-npz` asks for every field of the response in one .npz archive, and
`Accept: image/png` (/sample, /decode, /interpolate) for the points as one picture.
The raw body is parsed here with orjson and validated by the request model: FastAPI's own body handling
costs more than a small model's whole run. GET /loglik's point comes as comma-separated text (parse_csv_point).
"""

import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.types import Scope

from service.errors import InvalidInput, UnreadableBody, UnsupportedMediaType
from service.http.payloads import NPY, NPZ, PNG, read_npy, write_npz, write_png
from service.http.replies import JSON, Reply


@dataclass(slots=True)
class Call:
    """What a data route reads of a request: taken from the raw ASGI scope by the front (http.front), or from a
    Starlette Request when the routes are mounted in a FastAPI app alone (http.direct)."""

    media_type: str  # the content-type without parameters, lower case; application/json when absent
    query: dict[str, str]
    body: bytes
    accept: str

    @classmethod
    def of(cls, content_type: str | None, query: dict[str, str], body: bytes, accept: str | None) -> "Call":
        media_type = (content_type or JSON).split(";")[0].strip().lower()
        return cls(media_type, query, body, accept or "")

    @classmethod
    def from_scope(cls, scope: Scope, body: bytes) -> "Call":
        """From the raw ASGI scope, as the front reads it (no Starlette Request)."""
        content_type = accept = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
        query = scope["query_string"]
        return cls.of(content_type, dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {},
                      body, accept)


def parse_request(call: Call, params_schema: type[BaseModel], schema: type[BaseModel],
                  array_field: str) -> tuple[BaseModel, Any]:
    """The validated parameters and the array: a list from a JSON body, or an ndarray from a .npy body.

    schema is params_schema plus the array field; query values are text, so they are validated leniently.
    """
    if call.media_type == NPY:
        return validate_fields(params_schema, call.query, strict=False), read_npy(call.body, array_field)
    if not _is_json(call.media_type):
        raise UnsupportedMediaType(f"content-type: {call.media_type!r} is not taken; send application/json, or the "
                                   f"array '{array_field}' as {NPY} with the other fields in the query string")
    content = _parse_json(call.body)
    if call.query:
        repeated = sorted(set(call.query) & set(content))
        if repeated:
            raise InvalidInput(f"{', '.join(repeated)}: given in both the query string and the body; give it once")
        content = {**validate_fields(params_schema, call.query, strict=False).model_dump(include=set(call.query)),
                   **content}
    params = validate_fields(schema, content, strict=True)
    array = getattr(params, array_field)
    if b"true" in call.body or b"false" in call.body:  # the walk costs only the rare body with a JSON boolean
        refuse_booleans(array, array_field)
    return params, array


def parse_json_request(call: Call, schema: type[BaseModel]) -> BaseModel:
    """A JSON body, validated strictly, for a route that takes no array (so no .npy body either)."""
    if not _is_json(call.media_type):
        raise UnsupportedMediaType(f"content-type: {call.media_type!r} is not taken; send the fields as a JSON "
                                   "object with content-type: application/json")
    return validate_fields(schema, _parse_json(call.body), strict=True)


def reply(call: Call, content: dict) -> Reply:
    """JSON unless the client accepts application/x-npz."""
    if NPZ in call.accept:
        return Reply(write_npz(content), NPZ)
    return Reply(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY))


def wants_png(call: Call) -> bool:
    return PNG in call.accept


def png_reply(points, image) -> Reply:
    """The points (n, *data_shape) as one PNG grid (CONTRACT section 4)."""
    return Reply(write_png(points, image), PNG)


def _is_json(media_type: str) -> bool:
    return media_type == JSON or media_type.endswith("+json")


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


def validate_fields(schema: type[BaseModel], content: dict, strict: bool) -> BaseModel:
    try:
        return schema.model_validate(content, strict=strict)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


def parse_csv_point(text: str, field: str) -> list[float]:
    """'v1,v2,...' -> one flat data point; each value exactly a JSON number (no spaces, _, hex, nan or inf)."""
    try:
        values = orjson.loads(f"[{text}]")
    except orjson.JSONDecodeError:
        values = None
    if (not values or any(type(value) not in (int, float) for value in values)
            or any(space in text for space in JSON_WHITESPACE)):
        raise InvalidInput(_first_bad_item(text, field))
    return values


JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
JSON_WHITESPACE = " \t\r\n"


def _first_bad_item(text: str, field: str) -> str:
    fix = f"send comma-separated numbers as JSON writes them, e.g. {field}=0,0.5,-1.5e-3"
    for index, item in enumerate(text.split(",")):
        if not item:
            return f"{field}: value {index} is empty; {fix}"
        if not JSON_NUMBER.fullmatch(item):
            return (f"{field}: value {index} ({item[:40]!r}) is not a number; {fix} (no spaces, underscores, "
                    "hex, nan or inf)")
        if not math.isfinite(float(item)):
            return f"{field}: value {index} ({item[:40]!r}) is too large for a number; send finite numbers"
    return f"{field}: not a list of numbers; {fix}"


def refuse_booleans(values: list, field: str) -> None:
    """A JSON true or false inside an array is an error: NumPy would take it as 1 or 0 without a word.

    Walks the nested lists in document order with a stack (a recursion would overflow on deep nesting).
    """
    stack = [(iter(enumerate(values)), "")]
    while stack:
        items, path = stack[-1]
        for index, item in items:
            if item is True or item is False:
                raise InvalidInput(f"{field}{path}[{index}]: {'true' if item else 'false'} is not a number; send 1 "
                                   "or 0 (or the array as application/x-npy, where dtype bool is taken)")
            if isinstance(item, list):
                stack.append((iter(enumerate(item)), f"{path}[{index}]"))
                break
        else:
            stack.pop()
