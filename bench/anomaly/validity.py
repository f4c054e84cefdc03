"""Validity of the conformal p-values (CONTRACT section 3): on each model's evaluation rows (the test rows outside
the reference's calibration split, so held out from training, selection and the reference), the share flagged at
fpr, is_outlier = p_value <= fpr, with its exact binomial interval.

For exchangeable points the guarantee is marginal: P(p <= fpr) = m / (n + 1) <= fpr with m = floor(fpr (n + 1)),
averaged over the draw of the reference too. Given one fixed reference the rate is a random variable (a Beta(m,
n + 1 - m) draw over references), so with a small reference the observed rate scatters around m / (n + 1) by more
than the binomial interval of the evaluation rows alone says: the count flagged among M evaluation points is then
Beta-Binomial(M, m, n + 1 - m), and its central 95% range is what "valid" predicts (metrics.conformal_flag_range).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.anomaly.data import held_out
from bench.anomaly.metrics import clopper_pearson, conformal_flag_range
from bench.anomaly.scores import ScoreCache, loglik
from modelrepo.contract import LIKELIHOOD_RATIO
from modelrepo.reference import ConformalScores
from service.engine.engine import ModelEngine
from service.engine.repository import ModelRepository

FPRS = (0.01, 0.05, 0.1)
STAND_IN_K, STAND_IN_SEED = 1000, 0  # a reference made here, for a version without reference.json


@dataclass(frozen=True)
class Scoring:
    """How a version scores points for /score: its reference's scores, k, seed and background, if any."""

    engine: ModelEngine
    background: ModelEngine | None
    conformal: ConformalScores
    k: int
    seed: int
    origin: str  # "reference.json" or how the stand-in was made
    reproduced: float | None = None  # max |reference score - the score recomputed here| over the calibration rows

    @property
    def score_name(self) -> str:
        return "likelihood ratio" if self.background is not None else "log p(x)"

    def scores(self, points: np.ndarray, cache: ScoreCache) -> np.ndarray:
        return score_points(self.engine, self.background, points, self.k, self.seed, cache)


def score_points(engine: ModelEngine, background: ModelEngine | None, points: np.ndarray, k: int, seed: int,
                 cache: ScoreCache) -> np.ndarray:
    """/score's score: log p(x), or log p(x) - log p_background(x), both with the same k and seed; (N,)."""
    own = loglik(engine, points, k, seed, cache)
    return own if background is None else own - loglik(background, points, k, seed, cache)


def scoring(repository: ModelRepository, engine: ModelEngine, calibration: np.ndarray, cache: ScoreCache,
            check: bool = True) -> Scoring:
    """The version's reference as /score uses it; without reference.json, a stand-in: the calibration rows scored
    here (log p(x), k = 1000, seed 0), which is what `python -m service reference` would write from them."""
    if engine.reference is None:
        scores = score_points(engine, None, calibration, STAND_IN_K, STAND_IN_SEED, cache)
        return Scoring(engine, None, ConformalScores(scores), STAND_IN_K, STAND_IN_SEED,
                       f"made here from the {len(calibration)} calibration rows (no reference.json)")
    reference = engine.reference
    background = None
    if reference.score == LIKELIHOOD_RATIO:
        background = repository.scoring(engine)[1]
    made = Scoring(engine, background, engine.conformal, reference.k, reference.seed, "reference.json")
    if not check:
        return made
    # The reference must be the calibration split's scores for the evaluation rows to be held out from it.
    recomputed = np.sort(made.scores(calibration, cache))
    if len(recomputed) != reference.n:
        raise ValueError(f"{engine.ref}: reference.json holds {reference.n} scores, the calibration split "
                         f"{len(recomputed)} rows: it was not made from them, and the study cannot trust its split")
    return Scoring(engine, background, made.conformal, made.k, made.seed, made.origin,
                   float(np.max(np.abs(recomputed - made.conformal.sorted))))


@dataclass(frozen=True)
class ValidityRow:
    model: str
    score: str
    origin: str
    n_reference: int
    k: int
    n_evaluation: int
    fpr: float
    bound: float  # m / (n + 1): the marginal false-positive rate the p-values deliver at this fpr
    flagged: int
    low: float
    high: float
    expected_range: tuple[int, int]  # flagged counts, the central 95% of Beta-Binomial(M, m, n + 1 - m)
    reproduced: float | None

    @property
    def observed(self) -> float:
        return self.flagged / self.n_evaluation


def validity(repository: ModelRepository, cache: ScoreCache, fprs=FPRS, log=print) -> list[ValidityRow]:
    rows = []
    for name in sorted(repository.loaded):
        for version, engine in sorted(repository.loaded[name].items()):
            split = held_out(Path(repository.root) / name / str(version))
            made = scoring(repository, engine, split.calibration, cache)
            p_values = made.conformal.p_values(made.scores(split.evaluation, cache))  # (M,)
            log(f"validity: {engine.ref}, {len(p_values)} evaluation rows scored ({made.score_name})")
            for fpr in fprs:
                flagged = int(np.sum(p_values <= fpr))
                low, high = clopper_pearson(flagged, len(p_values))
                m, n = made.conformal.rank_for(fpr), made.conformal.n
                rows.append(ValidityRow(engine.ref, made.score_name, made.origin, n, made.k, len(p_values), fpr,
                                        m / (n + 1), flagged, low, high, conformal_flag_range(m, n, len(p_values)),
                                        made.reproduced))
    return rows
