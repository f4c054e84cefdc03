"""Per-feature anomaly scores (shared/CONTRACT.md, section 3): which parts of a point the model cannot explain.

    feature_scores[i, d] = E over p(z | x_i) of -log p(x_i,d | z)        (autoregressive: -log p(x_i,d | z, x_i,<d))

estimated with the k draws /loglik uses, each weighted by its self-normalised importance weight
w_j / sum_j w_j, w = p(x, z) / q(z|x); for enumerated categorical latents, the exact posterior p(z|x) over every
configuration. Per point the features sum to the weighted mean of -log p(x|z). The weights are accumulated
slice by slice against a running maximum, as modelrepo.importance does, so no slice's weights overflow.
"""

import math
from collections.abc import Callable

import numpy as np

from modelrepo.categorical import Decode, Encode, categorical_slice_terms, configurations
from modelrepo.likelihood import (
    Categorical,
    GaussianPrior,
    Likelihood,
    Params,
    gaussian_slice_terms,
    one_hot,
    slicing,
)
from modelrepo.stopping import ShouldStop, stop_if_asked


class WeightedMeanAccumulator:
    """For N points: sum_j w_j v_j / sum_j w_j over slices of (log w (b, c), v (b, c, D)), rows by slice."""

    def __init__(self, n_points: int, features: int):
        self.running_max = np.full(n_points, -np.inf)  # (N,)
        self.weight_sum = np.zeros(n_points)  # sum exp(log_w - running_max) (N,)
        self.weighted = np.zeros((n_points, features))  # sum exp(log_w - running_max) v (N, D)

    def add(self, rows: slice, log_w: np.ndarray, values: np.ndarray) -> None:
        """log_w (b, c) and values (b, c, D) of c more draws for the points `rows`."""
        new_max = np.maximum(self.running_max[rows], log_w.max(axis=1))  # (b,)
        safe_max = np.where(np.isfinite(new_max), new_max, 0.0)
        with np.errstate(invalid="ignore", over="ignore"):
            scale = np.where(np.isfinite(new_max), np.exp(self.running_max[rows] - safe_max), 1.0)  # (b,)
            weights = np.exp(log_w - safe_max[:, None])  # (b, c)
        self.weight_sum[rows] = self.weight_sum[rows] * scale + weights.sum(axis=1)
        self.weighted[rows] = self.weighted[rows] * scale[:, None] + np.einsum("bc,bcd->bd", weights, values)
        self.running_max[rows] = new_max

    def result(self) -> np.ndarray:
        """(N, D); NaN for a point whose every weight is zero (its p(x) is 0 to float64)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.weighted / self.weight_sum[:, None]


def _weighted(n: int, data_dim: int, k: int, block_and_chunk: tuple[int, int], flat_x: np.ndarray,
              likelihood: Likelihood, log_weight_and_params: Callable[[slice, slice], tuple[np.ndarray, Params]],
              should_stop: ShouldStop | None) -> np.ndarray:
    block, chunk = block_and_chunk
    accumulator = WeightedMeanAccumulator(n, data_dim)
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        for first in range(0, k, chunk):
            stop_if_asked(should_stop)
            log_rest, params = log_weight_and_params(rows, slice(first, min(first + chunk, k)))
            elements = likelihood.log_density_elements(flat_x[rows], params)  # (b, c, D)
            accumulator.add(rows, elements.sum(-1) + log_rest, -elements)
    return accumulator.result()


def importance_feature_scores(encode: Callable, decode: Callable, likelihood: Likelihood, prior: GaussianPrior,
                              x: np.ndarray, eps: np.ndarray, work_elements: int,
                              should_stop: ShouldStop | None = None, autoregressive: bool = False) -> np.ndarray:
    """x (N, *data_shape), eps (K, L) as modelrepo.likelihood.importance_sampled_loglik -> (N, D) float64."""
    n, data_dim = len(x), math.prod(x.shape[1:])
    k, latent_dim = eps.shape
    terms = gaussian_slice_terms(encode, decode, prior, x, eps, autoregressive)

    def log_weight_and_params(rows: slice, samples: slice) -> tuple[np.ndarray, Params]:
        params, log_prior_ratio = terms(rows, samples)
        return log_prior_ratio, params

    flat_x = x.reshape(n, 1, data_dim).astype(np.float64)  # (N, 1, D)
    return _weighted(n, data_dim, k, slicing(n, k, data_dim, latent_dim, work_elements), flat_x, likelihood,
                     log_weight_and_params, should_stop)


def categorical_importance_feature_scores(encode: Encode, decode: Decode, likelihood: Likelihood,
                                          prior: Categorical, x: np.ndarray, uniforms: np.ndarray,
                                          work_elements: int, should_stop: ShouldStop | None = None) -> np.ndarray:
    """z ~ q(z|x) from uniforms (K, G), as modelrepo.categorical.categorical_importance_loglik -> (N, D)."""
    n, data_dim = len(x), math.prod(x.shape[1:])
    k, groups = uniforms.shape
    terms = categorical_slice_terms(encode, decode, prior, x, uniforms)

    def log_weight_and_params(rows: slice, samples: slice) -> tuple[np.ndarray, Params]:
        params, log_prior, log_q_z = terms(rows, samples)
        return log_prior - log_q_z, params

    flat_x = x.reshape(n, 1, data_dim).astype(np.float64)  # (N, 1, D)
    return _weighted(n, data_dim, k, slicing(n, k, data_dim, groups * prior.categories, work_elements), flat_x,
                     likelihood, log_weight_and_params, should_stop)


def enumerated_feature_scores(decode: Decode, likelihood: Likelihood, prior: Categorical, x: np.ndarray,
                              work_elements: int, should_stop: ShouldStop | None = None) -> np.ndarray:
    """The exact posterior expectation over every configuration z, weights p(x, z): (N, D). No encoder: the
    posterior is exact, not a proposal's."""
    n, data_dim = len(x), math.prod(x.shape[1:])
    groups, categories = prior.groups, prior.categories
    terms = categories**groups
    flat_x = x.reshape(n, 1, data_dim).astype(np.float64)  # (N, 1, D)
    block, chunk = slicing(n, terms, data_dim, groups * categories, work_elements)
    accumulator = WeightedMeanAccumulator(n, data_dim)
    for start in range(0, terms, chunk):
        stop_if_asked(should_stop)
        z = one_hot(configurations(start, min(start + chunk, terms), groups, categories), categories)  # (c, G, C)
        params = {name: value.reshape(1, len(z), data_dim) for name, value in decode(z).items()}  # each (1, c, D)
        log_prior = prior.log_density(z)  # (c,)
        for first in range(0, n, block):
            rows = slice(first, min(first + block, n))
            elements = likelihood.log_density_elements(flat_x[rows], params)  # (b, c, D)
            accumulator.add(rows, elements.sum(-1) + log_prior, -elements)
    return accumulator.result()
