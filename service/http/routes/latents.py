from fastapi import APIRouter

from service.dataplane.dataplane import DataPlane
from service.http.codecs import Call, parse_request, reply
from service.http.direct import direct
from service.http.replies import Reply
from service.http.routes.documentation import (
    ERRORS,
    binary_response,
    body_documentation,
)
from service.http.schemas import (
    DecodeParams,
    DecodeRequest,
    DecodeResponse,
    EncodeParams,
    EncodeRequest,
    EncodeResponse,
)

router = APIRouter(tags=["latents"], responses=ERRORS)


async def encode_batch(dataplane: DataPlane, call: Call) -> Reply:
    """Encode data into q(z|x): mu and logvar per point (logits for categorical latents), and samples of z when asked."""
    params, x = parse_request(call, EncodeParams, EncodeRequest, "x")
    model, result = await dataplane.encode(params.model, x, params.samples, params.seed)
    return reply(call, {"model": model, **result})


async def decode_batch(dataplane: DataPlane, call: Call) -> Reply:
    """Decode latents: E[x given z] and the likelihood's parameters; autoregressive models draw x given z."""
    params, z = parse_request(call, DecodeParams, DecodeRequest, "z")
    model, result = await dataplane.decode(params.model, z, params.seed)
    return reply(call, {"model": model, **result})


router.post("/encode", response_model=EncodeResponse, response_model_exclude_none=True,
            responses=binary_response("mu, logvar or logits (and z) as arrays, model as a string."),
            openapi_extra=body_documentation(EncodeRequest, "x", "The points to encode, as JSON or .npy."),
            )(direct(encode_batch))
router.post("/decode", response_model=DecodeResponse, response_model_exclude_none=True,
            responses=binary_response("mean and the likelihood's parameters (and x, for autoregressive models) as arrays, "
                                       "model as a string."),
            openapi_extra=body_documentation(DecodeRequest, "z", "The latents to decode, as JSON or .npy."),
            )(direct(decode_batch))
