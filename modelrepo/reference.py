"""reference.json of a model version (shared/CONTRACT.md, section 3) and the conformal math over it.

    p_value(s)  = (1 + #{j : s_j <= s}) / (n + 1)      the conformal lower-tail p-value of a score s
    m(fpr)      = #{r in 1..n+1 : r / (n + 1) <= fpr}   (= floor(fpr (n + 1)), counted in the p-values' own floats)
    threshold   = s_(m), the m-th smallest reference score: p_value(s) <= fpr exactly when s < s_(m)

For points exchangeable with the reference's, P(p_value <= fpr) <= fpr for every fpr: the false-positive rate
asked for is the one delivered. Low scores are unusual.
"""

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, NonNegativeInt, PositiveInt, ValidationError, model_validator

from modelrepo.contract import LIKELIHOOD_RATIO, LOGLIK_SCORE, REFERENCE_FILE, REFERENCE_FORMAT, VERSION_PATTERN
from modelrepo.files import write_atomic


class ReferenceError(ValueError):
    """A reference.json that does not keep the contract: the version serves, /score does not."""


class Reference(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    format: Literal[REFERENCE_FORMAT]
    score: Literal[LOGLIK_SCORE, LIKELIHOOD_RATIO]
    k: PositiveInt = Field(description="importance samples per estimate of log p(x), as /loglik's k")
    seed: NonNegativeInt = Field(description="the seed of those samples, as /loglik's seed")
    scores: list[FiniteFloat] = Field(min_length=1, description="the score of each held-out point, any order")
    data: str = Field("", description="free text: what the points were")
    background: str | None = Field(None, pattern=VERSION_PATTERN,
                                   description="likelihood_ratio only: the background model, 'name:version'")

    @model_validator(mode="after")
    def _background_with_ratio(self) -> "Reference":
        if self.score == LIKELIHOOD_RATIO and self.background is None:
            raise ValueError('score "likelihood_ratio" needs "background": "name:version", the model whose log p(x) '
                             "is subtracted")
        if self.score == LOGLIK_SCORE and self.background is not None:
            raise ValueError('"background" belongs to score "likelihood_ratio"; a "loglik" reference has none')
        return self

    @property
    def n(self) -> int:
        return len(self.scores)

    def summary(self) -> dict:
        """What /score and GET /models say of it."""
        return {"n": self.n, "score": self.score, "k": self.k, "seed": self.seed, "data": self.data,
                "background": self.background}


def parse_reference(raw: bytes, where: str) -> Reference:
    """reference.json's bytes -> Reference; ReferenceError naming `where` and the first problem."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReferenceError(f"{where}: not JSON ({exc})") from None
    try:
        return Reference.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "the document"
        raise ReferenceError(f"{where}: {field}: {error['msg']}") from None


def write_reference(folder: Path, score: str, k: int, seed: int, scores: np.ndarray, data: str,
                    background: str | None = None) -> Path:
    """Write <folder>/reference.json atomically, checked as the service will read it."""
    document = {"format": REFERENCE_FORMAT, "score": score, "k": int(k), "seed": int(seed),
                "scores": [float(s) for s in np.asarray(scores, np.float64).ravel()], "data": data}
    if background is not None:
        document["background"] = background
    path = Path(folder) / REFERENCE_FILE
    raw = json.dumps(document, indent=1).encode()
    parse_reference(raw, str(path))  # NaN, inf, no points, a malformed background: refused before writing
    write_atomic(path, raw)
    return path


class ConformalScores:
    """The reference's scores, sorted once; p-values and thresholds for any batch of scores."""

    def __init__(self, scores: list[float] | np.ndarray):
        self.sorted = np.sort(np.asarray(scores, np.float64))  # (n,)
        self.n = len(self.sorted)

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        """scores (N,) -> (1 + #{j : s_j <= s}) / (n + 1), float64 (N,)."""
        at_or_below = np.searchsorted(self.sorted, np.asarray(scores, np.float64), side="right")  # (N,)
        return (1 + at_or_below) / (self.n + 1)

    def rank_for(self, fpr: float) -> int:
        """m: how many of the n + 1 possible p-values r / (n + 1) are <= fpr, each computed as p_values computes
        it, so that is_outlier (p_value <= fpr) and the threshold never disagree by a rounding."""
        m = math.floor(fpr * (self.n + 1))
        while m + 1 <= self.n + 1 and (m + 1) / (self.n + 1) <= fpr:
            m += 1
        while m > 0 and m / (self.n + 1) > fpr:
            m -= 1
        return m

    def threshold(self, fpr: float) -> float | None:
        """s_(m), the m-th smallest reference score; None when m = 0 (fpr below 1 / (n + 1))."""
        m = self.rank_for(fpr)
        return float(self.sorted[min(m, self.n) - 1]) if m else None

    @property
    def smallest_fpr(self) -> float:
        """1 / (n + 1): the smallest fpr this reference supports."""
        return 1 / (self.n + 1)
