from fastapi import APIRouter, Request, Response

from service.routes.bodies import binary_response, respond
from service.routes.deps import ERRORS, ServiceDep
from service.schemas import SampleRequest, SampleResponse

router = APIRouter(tags=["generation"], responses=ERRORS)


@router.post("/sample", response_model=SampleResponse, responses=binary_response("z and x as arrays."))
async def sample_model(body: SampleRequest, request: Request, service: ServiceDep) -> Response:
    """Draw z from the prior (scaled by temperature) and decode it."""
    model, result = await service.sample(body.model, body.n, body.seed, body.temperature, body.mode)
    return respond(request, {"model": model, **result})
