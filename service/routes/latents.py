from fastapi import APIRouter, Request, Response

from service.routes.bodies import binary_response, body_documentation, read_request, respond
from service.routes.deps import ERRORS, ServiceDep
from service.schemas import DecodeParams, DecodeRequest, DecodeResponse, EncodeParams, EncodeRequest, EncodeResponse

router = APIRouter(tags=["latents"], responses=ERRORS)


@router.post("/encode", response_model=EncodeResponse, response_model_exclude_none=True,
             responses=binary_response("mu, logvar (and z) as arrays, model as a string."),
             openapi_extra=body_documentation(EncodeRequest, "x", "The points to encode, as JSON or .npy."))
async def encode_batch(request: Request, service: ServiceDep) -> Response:
    """Encode data into q(z|x): mu and logvar per point, and samples of z when asked."""
    params, x = await read_request(request, EncodeParams, EncodeRequest, "x")
    model, result = await service.encode(params.model, x, params.samples, params.seed)
    return respond(request, {"model": model, **result})


@router.post("/decode", response_model=DecodeResponse, response_model_exclude_none=True,
             responses=binary_response("mean and the likelihood's parameters as arrays, model as a string."),
             openapi_extra=body_documentation(DecodeRequest, "z", "The latents to decode, as JSON or .npy."))
async def decode_batch(request: Request, service: ServiceDep) -> Response:
    """Decode latents: E[x given z] and the likelihood's parameters."""
    params, z = await read_request(request, DecodeParams, DecodeRequest, "z")
    model, result = await service.decode(params.model, z)
    return respond(request, {"model": model, **result})
