"""A job: one request's computation as the data plane describes it to the cache and the executor."""

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from modelrepo.stopping import ShouldStop
from service.engine.engine import ModelEngine
from service.types import Result

Compute = Callable[[np.ndarray | None, ShouldStop | None], Result]  # (rows, should_stop) -> arrays by name


@dataclass(slots=True)
class Job:
    engine: ModelEngine  # the version that computes it, as resolved when the request arrived
    operation: str  # "encode", "decode", "sample", "loglik": metrics and cache keys
    params: dict  # everything besides the rows that decides the answer (the cache key's part)
    rows: np.ndarray | None  # (N, ...) the request's points or latents; None when it sends none (/sample)
    points: int  # rows, or draws: the batch-size metric
    compute: Compute  # the engine's call; a run of several requests' rows passes no should_stop
    work: int  # rows through a model (points encoded or decoded, draws, points x k): admission units
    values: int  # values touched: what decides inline or in a thread, and whether it may be coalesced
    cacheable: bool = True  # False for fresh draws (no seed): each answer is new
    # Requests with equal runs may share one model run over their rows; None: alone. Its first item names the run
    # in the metrics (vae_coalesced_requests: "encoder", "decoder", "loglik").
    run: tuple[Hashable, ...] | None = None
