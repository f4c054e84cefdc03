"""/score's answer from /loglik's (shared/CONTRACT.md, section 3): the score of each point, its conformal
p-value against the version's reference (modelrepo.reference), the threshold at the fpr asked for, is_outlier.

    score    = loglik                                   a "loglik" reference
             | loglik - background_loglik               a "likelihood_ratio" reference
    p_value  = (1 + #{j : s_j <= score}) / (n + 1);  is_outlier = p_value <= fpr  (exactly: score < threshold)
"""

import math
from dataclasses import dataclass

import numpy as np

from modelrepo.reference import Reference
from service.engine.engine import ModelEngine
from service.errors import InvalidInput
from service.types import LoglikPlan, Result


@dataclass(slots=True)
class Scored:
    reference: dict  # the reference's summary: n, score, k, seed, data, background
    fpr: float
    threshold: float
    score: np.ndarray  # (N,) float64
    p_value: np.ndarray  # (N,) float64
    is_outlier: np.ndarray  # (N,) bool
    loglik: np.ndarray  # (N,) float64, /loglik's answer with the reference's k and seed
    stderr: np.ndarray  # (N,)
    method: str
    background_loglik: np.ndarray | None  # (N,), likelihood ratios only
    feature_scores: np.ndarray | None  # (N, *data_shape), when asked for


def threshold_for(engine: ModelEngine, fpr: float) -> float:
    """s_(m) for this fpr, or a 422 naming fpr: outside (0, 1), or below the smallest the reference supports."""
    if not (isinstance(fpr, float | int) and math.isfinite(fpr) and 0 < fpr < 1):
        raise InvalidInput(f"fpr: {fpr!r} is not a false-positive rate; send a number in (0, 1), e.g. 0.01")
    threshold = engine.conformal.threshold(fpr)
    if threshold is None:
        raise InvalidInput(f"fpr: {fpr:g} is below the smallest false-positive rate the reference of model "
                           f"{engine.ref} supports ({engine.conformal.n} points): 1 / (n + 1) = "
                           f"{engine.conformal.smallest_fpr:.6g}; send fpr >= that, or score against a reference "
                           "of more points")
    return threshold


def score_points(engine: ModelEngine, reference: Reference, fpr: float, threshold: float, plan: LoglikPlan,
                 own: Result, background_loglik: np.ndarray | None, feature_scores: np.ndarray | None) -> Scored:
    """own: /loglik's arrays for the points (loglik, stderr, elbo, each (N,))."""
    loglik = own["loglik"]
    score = loglik if background_loglik is None else loglik - background_loglik  # (N,)
    p_value = engine.conformal.p_values(score)
    return Scored(reference.summary(), fpr, threshold, score, p_value, p_value <= fpr, loglik, own["stderr"],
                  plan.method, background_loglik, feature_scores)
