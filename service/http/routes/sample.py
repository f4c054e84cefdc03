from fastapi import APIRouter

from service.dataplane.dataplane import DataPlane
from service.http.codecs import Call, parse_json_request, reply
from service.http.direct import direct
from service.http.replies import Reply
from service.http.routes.documentation import (
    ERRORS,
    binary_response,
    json_body_documentation,
)
from service.http.schemas import SampleRequest, SampleResponse

router = APIRouter(tags=["generation"], responses=ERRORS)


async def sample_model(dataplane: DataPlane, call: Call) -> Reply:
    """Draw z from the model's prior (at the given temperature) and decode it."""
    body = parse_json_request(call, SampleRequest)
    model, result = await dataplane.sample(body.model, body.n, body.seed, body.temperature, body.mode)
    return reply(call, {"model": model, **result})


router.post("/sample", response_model=SampleResponse, response_model_exclude_none=True,
            responses=binary_response("z and x (and, for autoregressive models, the parameters at x) as arrays."),
            openapi_extra=json_body_documentation(SampleRequest, "How many draws, and how."))(direct(sample_model))
