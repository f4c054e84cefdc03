from fastapi import APIRouter

from service.responses import ArrayJSONResponse
from service.routes.deps import ERRORS, ServiceDep
from service.schemas import DecodeRequest, DecodeResponse, EncodeRequest, EncodeResponse

router = APIRouter(tags=["latents"], responses=ERRORS)


@router.post("/encode", response_model=EncodeResponse, response_model_exclude_none=True)
async def encode_batch(body: EncodeRequest, service: ServiceDep) -> ArrayJSONResponse:
    """Encode data into q(z|x): mu and logvar per point, and samples of z when asked."""
    model, result = await service.encode(body.model, body.x, body.samples, body.seed)
    return ArrayJSONResponse({"model": model, **result})


@router.post("/decode", response_model=DecodeResponse, response_model_exclude_none=True)
async def decode_batch(body: DecodeRequest, service: ServiceDep) -> ArrayJSONResponse:
    """Decode latents: E[x given z] and the likelihood's parameters."""
    model, result = await service.decode(body.model, body.z)
    return ArrayJSONResponse({"model": model, **result})
