"""The streamed log-mean-exp against a direct float64 computation."""

import math

import numpy as np
from scipy.special import logsumexp

from modelrepo.importance import LogMeanExpAccumulator


def test_slices_of_any_size_give_the_direct_answer():
    rng = np.random.default_rng(0)
    log_w = rng.normal(scale=40.0, size=(5, 1000)) - 800.0  # far outside exp's range: needs the running max
    log_w[:, 700] += 300  # one dominant weight arriving late
    accumulator = LogMeanExpAccumulator(5)
    for start, stop in [(0, 1), (1, 17), (17, 600), (600, 1000)]:
        accumulator.add(log_w[:, start:stop])
    estimate = accumulator.result()
    np.testing.assert_allclose(estimate.loglik, logsumexp(log_w, axis=1) - math.log(1000), rtol=1e-12)
    np.testing.assert_allclose(estimate.elbo, log_w.mean(axis=1), rtol=1e-12)
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))  # the ratio is scale-free
    np.testing.assert_allclose(estimate.stderr, w.std(axis=1) / (math.sqrt(1000) * w.mean(axis=1)), rtol=1e-9)


def test_zero_weights_give_minus_infinity_not_nan():
    accumulator = LogMeanExpAccumulator(2)
    accumulator.add(np.array([[-np.inf, -np.inf], [-np.inf, 0.0]]))
    accumulator.add(np.array([[-np.inf], [math.log(2.0)]]))
    estimate = accumulator.result()
    assert estimate.loglik[0] == -np.inf
    assert math.isclose(estimate.loglik[1], math.log(1.0))  # (0 + 1 + 2) / 3
