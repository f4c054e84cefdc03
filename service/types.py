"""Types and names that two tiers share (http, dataplane, engine), defined once, here, below all of them."""

from typing import Literal, NamedTuple

import numpy as np

from modelrepo.contract import EXACT, IMPORTANCE

CUDA_DEVICE, CPU_DEVICE = "cuda", "cpu"  # where an engine's graphs run (ModelEngine.device)
Result = dict[str, np.ndarray]  # an operation's arrays by their name in the API, each with a row per point
Method = Literal[IMPORTANCE, EXACT]  # /loglik's "method", for pydantic (the names, not their spellings again)


class LoglikPlan(NamedTuple):
    """How /loglik answers a request for k samples: IMPORTANCE with k samples, or EXACT over `terms` latents."""

    method: str
    terms: int
