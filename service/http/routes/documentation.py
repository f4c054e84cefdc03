"""What the routes add to the OpenAPI description: the error answers, and the bodies of the routes that read
their bodies themselves (both media types, and the query parameters of an application/x-npy call)."""

from pydantic import BaseModel

from service.http.payloads import NPY, NPZ, PNG
from service.http.schemas import ErrorResponse

BINARY = {"type": "string", "format": "binary"}
ERRORS: dict[int | str, dict] = {
    400: {"model": ErrorResponse, "description": "The body could not be read (not JSON, not a .npy array)."},
    404: {"model": ErrorResponse, "description": "Unknown model or version."},
    413: {"model": ErrorResponse, "description": "Request body over VAE_MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": "A content-type other than application/json or application/x-npy."},
    422: {"model": ErrorResponse, "description": "A field's value cannot be used; the message names it."},
    503: {"model": ErrorResponse, "description": "The model exists but failed to load."},
}
PICTURE_ERRORS: dict[int | str, dict] = {
    406: {"model": ErrorResponse, "description": "Accept: image/png for a model without an image shape (manifest key "
          "image)."},
}
SCORE_ERRORS: dict[int | str, dict] = {
    **ERRORS,
    409: {"model": ErrorResponse, "description": "The version has no reference /score can use (none, a malformed "
          "one, or a likelihood ratio whose background is not served); the message says why and how to make one."},
}


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




def binary_response_or_picture(arrays: str, picture: str) -> dict:
    """An .npz of the arrays, or with Accept: image/png one PNG (CONTRACT section 4: each pixel
    round(255 (clip(v, lo, hi) - lo) / (hi - lo)), no borders, no scaling)."""
    return {200: {"content": {NPZ: {"schema": {**BINARY, "description": arrays}},
                              PNG: {"schema": {**BINARY, "description": picture}}}}}
