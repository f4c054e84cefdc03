from fastapi import APIRouter

from service.responses import ArrayJSONResponse
from service.routes.deps import ERRORS, ServiceDep
from service.schemas import SampleRequest, SampleResponse

router = APIRouter(tags=["generation"], responses=ERRORS)


@router.post("/sample", response_model=SampleResponse)
async def sample_model(body: SampleRequest, service: ServiceDep) -> ArrayJSONResponse:
    """Draw z from the prior (scaled by temperature) and decode it."""
    model, result = await service.sample(body.model, body.n, body.seed, body.temperature, body.mode)
    return ArrayJSONResponse({"model": model, **result})
