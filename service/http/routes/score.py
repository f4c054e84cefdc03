"""POST /score and GET /score (shared/CONTRACT.md, section 3): anomaly scores against the version's reference."""

import json
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from service.dataplane.dataplane import DataPlane
from service.http.codecs import Call, parse_csv_point, parse_request, reply
from service.http.deps import DataPlaneDep
from service.http import operations
from service.http.direct import direct
from service.http.payloads import NPZ
from service.http.replies import ArrayJSONResponse, Reply
from service.http.routes.documentation import SCORE_ERRORS, binary_response, body_documentation
from service.http.schemas import (
    MODEL_PATTERN,
    ScoreParams,
    ScorePointResponse,
    ScoreRequest,
    ScoreResponse,
    finite,
)

router = APIRouter(tags=["anomaly"], responses=SCORE_ERRORS)


async def score_points(dataplane: DataPlane, call: Call) -> Reply:
    """Anomaly scores against the model's reference: the score of each point, its conformal p-value, the threshold
    at the false-positive rate asked for, is_outlier; with features, which parts of each point are unexplained."""
    params, x = parse_request(call, ScoreParams, ScoreRequest, "x")
    content = await operations.score(dataplane, params, x)
    if NPZ in call.accept:  # an .npz holds arrays: the reference's summary travels as JSON text
        content["reference"] = json.dumps(content["reference"])
    return reply(call, content)


router.post("/score", response_model=ScoreResponse, response_model_exclude_none=True,
            responses=binary_response("The arrays of the JSON answer; reference as JSON text, model, method as "
                                      "strings, fpr and threshold as numbers."),
            openapi_extra=body_documentation(ScoreRequest, "x", "The points to score, as JSON or .npy."),
            )(direct(score_points))


@router.get("/score", response_model=ScorePointResponse, response_model_exclude_none=True)
async def score_point(
    dataplane: DataPlaneDep,
    x: Annotated[str, Query(description="One data point, flat, comma-separated, in C order; each value a JSON "
                                        "number (no spaces, underscores, hex, nan or inf).", examples=["0,1,0,1"])],
    model: Annotated[str | None, Query(json_schema_extra={"pattern": MODEL_PATTERN}, description="'name' or 'name:version'.")] = None,
    fpr: Annotated[float | None, Query(gt=0, lt=1, description="The false-positive rate (default: VAE_DEFAULT_FPR)."),
                   BeforeValidator(finite)] = None,
    features: Annotated[bool, Query(description="Also the per-feature scores, [*data_shape].")] = False,
) -> ArrayJSONResponse:
    """The anomaly score of one data point sent in the query string."""
    reference, scored = await dataplane.score(model, [parse_csv_point(x, "x")], fpr, features)
    content = operations.score_content(reference, scored)
    per_point = {name: value[0] for name, value in content.items() if name in _PER_POINT}
    return ArrayJSONResponse({**content, **per_point})


_PER_POINT = ("score", "p_value", "is_outlier", "loglik", "stderr", "background_loglik", "feature_scores")

