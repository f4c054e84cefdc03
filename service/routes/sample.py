from fastapi import APIRouter

from service.operations import VaeService
from service.routes.bodies import Call, Reply, binary_response, json_body_documentation, parse_json_request, reply
from service.routes.deps import ERRORS
from service.routes.direct import direct
from service.schemas import SampleRequest, SampleResponse

router = APIRouter(tags=["generation"], responses=ERRORS)


async def sample_model(service: VaeService, call: Call) -> Reply:
    """Draw z from the model's prior (at the given temperature) and decode it."""
    body = parse_json_request(call, SampleRequest)
    model, result = await service.sample(body.model, body.n, body.seed, body.temperature, body.mode)
    return reply(call, {"model": model, **result})


router.post("/sample", response_model=SampleResponse, response_model_exclude_none=True,
            responses=binary_response("z and x (and, for autoregressive models, the parameters at x) as arrays."),
            openapi_extra=json_body_documentation(SampleRequest, "How many draws, and how."))(direct(sample_model))
