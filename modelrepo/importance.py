"""The contract's log-likelihood estimate from importance log-weights, accumulated slice by slice.

    loglik = log (1/k) sum_i w_i        stderr = sd(w) / (sqrt(k) mean(w))        elbo = (1/k) sum_i log w_i

Slices of log-weights arrive one after another; a running maximum keeps the sums in range, so the k
weights of a point never need to be held at once.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class ImportanceEstimate:
    loglik: np.ndarray  # (N,) float64
    stderr: np.ndarray  # (N,) float64
    elbo: np.ndarray  # (N,) float64

    @classmethod
    def concatenate(cls, parts: list["ImportanceEstimate"]) -> "ImportanceEstimate":
        """Estimates of consecutive blocks of points -> one estimate over all of them."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("loglik", "stderr", "elbo")))


class LogMeanExpAccumulator:
    def __init__(self, n_points: int):
        self.running_max = np.full(n_points, -np.inf)
        self.sum_w = np.zeros(n_points)  # sum exp(log_w - running_max)
        self.sum_w2 = np.zeros(n_points)  # sum exp(2 (log_w - running_max))
        self.sum_log_w = np.zeros(n_points)
        self.count = 0

    def add(self, log_w: np.ndarray) -> None:
        """log_w (N, c): c more log-weights for each of the N points."""
        log_w = np.asarray(log_w, dtype=np.float64)
        new_max = np.maximum(self.running_max, log_w.max(axis=1))
        finite = np.isfinite(new_max)
        safe_max = np.where(finite, new_max, 0.0)  # all weights zero (or +inf) so far: no rescaling
        with np.errstate(invalid="ignore", over="ignore"):
            scale = np.where(finite, np.exp(self.running_max - safe_max), 1.0)
            shifted = log_w - safe_max[:, None]
            self.sum_w = self.sum_w * scale + np.exp(shifted).sum(axis=1)
            self.sum_w2 = self.sum_w2 * scale**2 + np.exp(2 * shifted).sum(axis=1)
        self.sum_log_w += log_w.sum(axis=1)
        self.running_max = new_max
        self.count += log_w.shape[1]

    def add_sums(self, log_sum_w: np.ndarray, log_sum_w2: np.ndarray, sum_log_w: np.ndarray, count: int) -> None:
        """A slice of `count` log-weights per point, already summed: log sum w, log sum w^2, sum log w (each N,)."""
        log_sum_w, log_sum_w2 = np.asarray(log_sum_w, np.float64), np.asarray(log_sum_w2, np.float64)
        new_max = np.maximum(self.running_max, log_sum_w)
        finite = np.isfinite(new_max)
        safe_max = np.where(finite, new_max, 0.0)
        with np.errstate(invalid="ignore", over="ignore"):
            scale = np.where(finite, np.exp(self.running_max - safe_max), 1.0)
            self.sum_w = self.sum_w * scale + np.exp(log_sum_w - safe_max)
            # sum w^2 <= (sum w)^2, so this exponent is at most 0: no overflow
            self.sum_w2 = self.sum_w2 * scale**2 + np.exp(log_sum_w2 - 2 * safe_max)
        self.sum_log_w += np.asarray(sum_log_w, np.float64)
        self.running_max = new_max
        self.count += count

    def result(self) -> ImportanceEstimate:
        k = self.count
        mean_w = self.sum_w / k  # in units of exp(running_max)
        with np.errstate(divide="ignore", invalid="ignore"):
            var_w = np.maximum(self.sum_w2 / k - mean_w**2, 0.0)
            loglik = np.where(np.isfinite(self.running_max), self.running_max + np.log(mean_w), self.running_max)
            stderr = np.sqrt(var_w) / (np.sqrt(k) * mean_w)
        return ImportanceEstimate(loglik=loglik, stderr=stderr, elbo=self.sum_log_w / k)
