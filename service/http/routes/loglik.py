from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from service.dataplane.dataplane import DataPlane
from service.http.codecs import Call, parse_csv_point, parse_request, reply
from service.http.deps import DataPlaneDep
from service.http import operations
from service.http.direct import direct
from service.http.replies import ArrayJSONResponse, Reply
from service.http.routes.documentation import (
    ERRORS,
    binary_response,
    body_documentation,
)
from service.http.schemas import (
    MAX_SEED,
    MODEL_PATTERN,
    LoglikParams,
    LoglikPointResponse,
    LoglikRequest,
    LoglikResponse,
    plain_digits,
)
from service.types import LoglikPlan

router = APIRouter(tags=["likelihood"], responses=ERRORS)


async def score_batch(dataplane: DataPlane, call: Call) -> Reply:
    """log p(x) per point, with its standard error and the ELBO: importance-sampled, or exact (categorical latents
    with few configurations)."""
    params, x = parse_request(call, LoglikParams, LoglikRequest, "x")
    return reply(call, await operations.loglik(dataplane, params, x))


router.post("/loglik", response_model=LoglikResponse,
            responses=binary_response("loglik, stderr and elbo as arrays, k as a number, model and method as strings."),
            openapi_extra=body_documentation(LoglikRequest, "x", "The points to score, as JSON or .npy."),
            )(direct(score_batch))


@router.get("/loglik", response_model=LoglikPointResponse)
async def score_point(
    dataplane: DataPlaneDep,
    x: Annotated[str, Query(description="One data point, flat, comma-separated, in C order; each value a JSON "
                                        "number (no spaces, underscores, hex, nan or inf).", examples=["0,1,0,1"])],
    model: Annotated[str | None, Query(json_schema_extra={"pattern": MODEL_PATTERN}, description="'name' or 'name:version'.")] = None,
    # Query before the validator: the other order leaves FastAPI's "ge" in the OpenAPI schema untranslated.
    k: Annotated[int, Query(ge=1, description="Importance samples."), BeforeValidator(plain_digits)] = 1000,
    seed: Annotated[int, Query(ge=0, le=MAX_SEED, description="Seed of the importance samples."),
                    BeforeValidator(plain_digits)] = 0,
) -> ArrayJSONResponse:
    """log p(x) of one data point sent in the query string."""
    reference, plan, result = await dataplane.loglik(model, [parse_csv_point(x, "x")], k, seed)
    return ArrayJSONResponse({"model": reference, **_how(plan), **{name: value[0] for name, value in result.items()}})


def _how(plan: LoglikPlan) -> dict:
    """The answer's "method" and "k": the samples drawn, or the terms summed exactly."""
    return {"method": plan.method, "k": plan.terms}
