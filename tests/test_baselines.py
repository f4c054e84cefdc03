"""The classical baselines against exact answers."""

import itertools

import numpy as np
from scipy import stats

from training.baselines import BernoulliMixture, IndependentBernoulli

ALL_BINARY_VECTORS = np.array(list(itertools.product([0.0, 1.0], repeat=6)))  # (64, 6)


def test_independent_bernoulli_against_scipy():
    x = (np.random.default_rng(0).uniform(size=(50, 6)) < 0.3).astype(float)
    model = IndependentBernoulli.fit(x)
    np.testing.assert_allclose(model.probs, (x.sum(0) + 1) / 52)
    expected = stats.bernoulli(model.probs).logpmf(x).sum(1)
    np.testing.assert_allclose(model.log_prob(x), expected)


def test_bernoulli_mixture_is_a_normalised_mixture():
    model = BernoulliMixture(np.log([0.2, 0.5, 0.3]), np.random.default_rng(1).uniform(0.05, 0.95, size=(3, 6)))
    by_hand = np.log(sum(w * stats.bernoulli(p).pmf(ALL_BINARY_VECTORS).prod(1)
                         for w, p in zip([0.2, 0.5, 0.3], model.probs)))
    np.testing.assert_allclose(model.log_prob(ALL_BINARY_VECTORS), by_hand)
    np.testing.assert_allclose(np.exp(model.log_prob(ALL_BINARY_VECTORS)).sum(), 1.0)


def test_em_recovers_a_known_mixture():
    rng = np.random.default_rng(2)
    truth = BernoulliMixture(np.log([0.4, 0.6]), np.array([[0.9] * 3 + [0.1] * 3, [0.1] * 3 + [0.9] * 3]))
    labels = rng.uniform(size=4000) < 0.4
    x = np.where(labels[:, None], rng.uniform(size=(4000, 6)) < truth.probs[0], rng.uniform(size=(4000, 6)) < truth.probs[1])
    x = x.astype(float)
    fitted = BernoulliMixture.fit(x, components=2, seed=0)
    order = np.argsort(fitted.probs[:, 0])[::-1]
    np.testing.assert_allclose(fitted.probs[order], truth.probs, atol=0.03)
    np.testing.assert_allclose(np.exp(fitted.log_weights[order]), [0.4, 0.6], atol=0.03)
    assert fitted.log_prob(x).mean() >= truth.log_prob(x).mean() - 1e-3
    assert fitted.log_prob(x).mean() > IndependentBernoulli.fit(x).log_prob(x).mean() + 0.5
