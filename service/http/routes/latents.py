from fastapi import APIRouter

from service.dataplane.dataplane import DataPlane
from service.http.codecs import Call, parse_json_request, parse_request, png_reply, reply, wants_png
from service.http import operations
from service.http.direct import direct
from service.http.replies import Reply
from service.http.routes.documentation import (
    ERRORS,
    binary_response,
    PICTURE_ERRORS,
    binary_response_or_picture,
    body_documentation,
    json_body_documentation,
)
from service.http.schemas import (
    DecodeParams,
    DecodeRequest,
    DecodeResponse,
    EncodeParams,
    EncodeRequest,
    EncodeResponse,
    InterpolateRequest,
    InterpolateResponse,
)

router = APIRouter(tags=["latents"], responses=ERRORS)


async def encode_batch(dataplane: DataPlane, call: Call) -> Reply:
    """Encode data into q(z|x): mu and logvar per point (logits for categorical latents), and samples of z when asked."""
    params, x = parse_request(call, EncodeParams, EncodeRequest, "x")
    return reply(call, await operations.encode(dataplane, params, x))


async def decode_batch(dataplane: DataPlane, call: Call) -> Reply:
    """Decode latents: E[x given z] and the likelihood's parameters; autoregressive models draw x given z.
    Accept: image/png answers the means (autoregressive models: the drawn x) as one picture."""
    params, z = parse_request(call, DecodeParams, DecodeRequest, "z")
    image = dataplane.image_of(params.model) if wants_png(call) else None
    content = await operations.decode(dataplane, params, z)
    if image is not None:
        return png_reply(content["x"] if "x" in content else content["mean"], image)
    return reply(call, content)


async def interpolate_latents(dataplane: DataPlane, call: Call) -> Reply:
    """A path through the latent space between two points or two latents, decoded as /decode decodes it.
    Accept: image/png answers the decoded path as one picture."""
    body = parse_json_request(call, InterpolateRequest)
    image = dataplane.image_of(body.model) if wants_png(call) else None
    model, result = await dataplane.interpolate(body.model, body.x, body.z, body.steps, body.path, body.seed)
    if image is not None:
        return png_reply(result["x"], image)
    return reply(call, {"model": model, **result})


router.post("/encode", response_model=EncodeResponse, response_model_exclude_none=True,
            responses=binary_response("mu, logvar or logits (and z) as arrays, model as a string."),
            openapi_extra=body_documentation(EncodeRequest, "x", "The points to encode, as JSON or .npy."),
            )(direct(encode_batch))
router.post("/decode", response_model=DecodeResponse, response_model_exclude_none=True,
            responses={**PICTURE_ERRORS, **binary_response_or_picture(
                "mean and the likelihood's parameters (and x, for autoregressive models) as arrays, model as a string.",
                "The means (autoregressive models: the drawn x) as one grid of ceil(sqrt(N)) columns.")},
            openapi_extra=body_documentation(DecodeRequest, "z", "The latents to decode, as JSON or .npy."),
            )(direct(decode_batch))
router.post("/interpolate", response_model=InterpolateResponse,
            responses={**PICTURE_ERRORS, **binary_response_or_picture(
                "z and x as arrays, model as a string.", "x as one grid of ceil(sqrt(steps)) columns.")},
            openapi_extra=json_body_documentation(InterpolateRequest, "The two ends and the path."),
            )(direct(interpolate_latents))
