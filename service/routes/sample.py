from fastapi import APIRouter, Request, Response

from service.routes.bodies import binary_response, json_body_documentation, read_json, respond
from service.routes.deps import ERRORS, ServiceDep
from service.schemas import SampleRequest, SampleResponse

router = APIRouter(tags=["generation"], responses=ERRORS)


@router.post("/sample", response_model=SampleResponse, responses=binary_response("z and x as arrays."),
             openapi_extra=json_body_documentation(SampleRequest, "How many draws, and how."))
async def sample_model(request: Request, service: ServiceDep) -> Response:
    """Draw z from the prior (scaled by temperature) and decode it."""
    body = await read_json(request, SampleRequest)
    model, result = await service.sample(body.model, body.n, body.seed, body.temperature, body.mode)
    return respond(request, {"model": model, **result})
