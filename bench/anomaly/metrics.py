"""The figures of the study. Anomalous (out-of-distribution) points are the positive class throughout, and every
score passed here is an anomaly score: high = anomalous (pass -log p(x), not log p(x))."""

import numpy as np
from scipy.stats import betabinom, binomtest
from sklearn.metrics import roc_auc_score, roc_curve

TARGET_TPR = 0.95


def labelled(normal: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores): 0 for the normal points, 1 for the anomalous ones, scores in the same order."""
    normal, anomalous = np.asarray(normal, np.float64).ravel(), np.asarray(anomalous, np.float64).ravel()
    return np.r_[np.zeros(len(normal)), np.ones(len(anomalous))], np.r_[normal, anomalous]


def auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """P(score of an anomalous point > score of a normal one), ties counted one half. Below 0.5: the score ranks
    the anomalous points as more normal than the normal ones."""
    return float(roc_auc_score(*labelled(normal, anomalous)))


def fpr_at_tpr(normal: np.ndarray, anomalous: np.ndarray, tpr: float = TARGET_TPR) -> float:
    """The share of normal points flagged by the threshold that flags at least `tpr` of the anomalous points (the
    smallest such share over the ROC curve's thresholds)."""
    fprs, tprs, _ = roc_curve(*labelled(normal, anomalous))
    return float(fprs[np.searchsorted(tprs, tpr - 1e-12, side="left")])


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) binomial interval of a proportion."""
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="exact")
    return float(interval.low), float(interval.high)


def conformal_flag_range(m: int, n: int, points: int, level: float = 0.95) -> tuple[int, int]:
    """How many of `points` new exchangeable points are flagged when p-values from a reference of n scores are
    exactly valid (continuous scores): given the reference, each is flagged with probability F(s_(m)) ~ Beta(m,
    n + 1 - m); over references the count is Beta-Binomial(points, m, n + 1 - m). Its central `level` range."""
    if m == 0:
        return 0, 0
    law = betabinom(points, m, n + 1 - m)
    tail = (1 - level) / 2
    return int(law.ppf(tail)), int(law.ppf(1 - tail))
