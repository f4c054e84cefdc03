"""The five data operations as the API answers them: validated parameters and the input array in, the answer's
content out (arrays and scalars by the contract's names). The service's own routes (http.routes) and the Open
Inference Protocol's (http.inference) both answer from these, so one request gives the same numbers on both.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from service.dataplane.dataplane import DataPlane
from service.dataplane.scoring import Scored
from service.http.schemas import DecodeParams, EncodeParams, LoglikParams, SampleRequest, ScoreParams

Content = dict[str, Any]  # "model" and the other scalars, and the arrays, by the names of CONTRACT section 2


async def encode(dataplane: DataPlane, params: EncodeParams, x) -> Content:
    model, result = await dataplane.encode(params.model, x, params.samples, params.seed)
    return {"model": model, **result}


async def decode(dataplane: DataPlane, params: DecodeParams, z) -> Content:
    model, result = await dataplane.decode(params.model, z, params.seed)
    return {"model": model, **result}


async def sample(dataplane: DataPlane, params: SampleRequest, _: None = None) -> Content:
    model, result = await dataplane.sample(params.model, params.n, params.seed, params.temperature, params.mode)
    return {"model": model, **result}


async def loglik(dataplane: DataPlane, params: LoglikParams, x) -> Content:
    model, plan, result = await dataplane.loglik(params.model, x, params.k, params.seed)
    return {"model": model, "method": plan.method, "k": plan.terms, **result}


async def score(dataplane: DataPlane, params: ScoreParams, x) -> Content:
    model, scored = await dataplane.score(params.model, x, params.fpr, params.features)
    return score_content(model, scored)


def score_content(model: str, scored: Scored) -> Content:
    content = {"model": model, "reference": scored.reference, "fpr": scored.fpr, "threshold": scored.threshold,
               "score": scored.score, "p_value": scored.p_value, "is_outlier": scored.is_outlier,
               "loglik": scored.loglik, "stderr": scored.stderr, "method": scored.method}
    if scored.background_loglik is not None:
        content["background_loglik"] = scored.background_loglik
    if scored.feature_scores is not None:
        content["feature_scores"] = scored.feature_scores
    return content


Operation = Callable[[DataPlane, BaseModel, Any], Awaitable[Content]]
