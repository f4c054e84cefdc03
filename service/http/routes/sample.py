from fastapi import APIRouter

from service.dataplane.dataplane import DataPlane
from service.http.codecs import Call, parse_json_request, png_reply, reply, wants_png
from service.http import operations
from service.http.direct import direct
from service.http.replies import Reply
from service.http.routes.documentation import (
    ERRORS,
    PICTURE_ERRORS,
    binary_response_or_picture,
    json_body_documentation,
)
from service.http.schemas import SampleRequest, SampleResponse

router = APIRouter(tags=["generation"], responses=ERRORS)


async def sample_model(dataplane: DataPlane, call: Call) -> Reply:
    """Draw z from the model's prior (at the given temperature) and decode it. Accept: image/png answers x as one
    picture."""
    body = parse_json_request(call, SampleRequest)
    image = dataplane.image_of(body.model) if wants_png(call) else None
    content = await operations.sample(dataplane, body)
    if image is not None:
        return png_reply(content["x"], image)
    return reply(call, content)


router.post("/sample", response_model=SampleResponse, response_model_exclude_none=True,
            responses={**PICTURE_ERRORS, **binary_response_or_picture(
                "z and x (and, for autoregressive models, the parameters at x) as arrays.",
                "x as one grid of ceil(sqrt(n)) columns.")},
            openapi_extra=json_body_documentation(SampleRequest, "How many draws, and how."))(direct(sample_model))
