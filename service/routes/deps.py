from typing import Annotated

from fastapi import Depends, Request

from service.operations import VaeService
from service.schemas import ErrorResponse


async def get_service(request: Request) -> VaeService:
    """async: FastAPI would run a plain function in its thread pool, a thread hop per request."""
    return request.app.state.service


ServiceDep = Annotated[VaeService, Depends(get_service)]

ERRORS: dict[int | str, dict] = {
    400: {"model": ErrorResponse, "description": "The body could not be read (not JSON, not a .npy array)."},
    404: {"model": ErrorResponse, "description": "Unknown model or version."},
    413: {"model": ErrorResponse, "description": "Request body over VAE_MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": "A content-type other than application/json or application/x-npy."},
    422: {"model": ErrorResponse, "description": "A field's value cannot be used; the message names it."},
    503: {"model": ErrorResponse, "description": "The model exists but failed to load."},
}
