"""modelrepo.likelihood against exact answers: densities against scipy.stats in float64, draws against their
distributions, and the two-graph estimator on models whose log p(x) has a closed form or a quadrature."""

import math

import numpy as np
import pytest
from scipy import special, stats

from modelrepo.likelihood import (
    StandardNormal,
    generator,
    importance_sampled_loglik,
    latent_noise,
    likelihood_for,
    prior_for,
    reparameterise,
    sigmoid,
    slicing,
)
from modelrepo.stopping import WorkStopped
from tests.service.handmade import LinearGaussian, OneDimensionalBernoulli

BERNOULLI, GAUSSIAN = likelihood_for("bernoulli"), likelihood_for("gaussian")


def test_bernoulli_log_density_is_scipys_summed_over_the_data_axis():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(3, 7, 10)).astype(np.float32)
    x = (rng.uniform(size=(3, 1, 10)) < 0.5).astype(np.float64)  # broadcast over the 7 parameter rows
    expected = stats.bernoulli(special.expit(logits.astype(np.float64))).logpmf(x).sum(-1)
    np.testing.assert_allclose(BERNOULLI.log_density(x, {"logits": logits}), expected, rtol=1e-12)


def test_bernoulli_log_density_of_fractional_x_is_the_cross_entropy():
    logits = np.array([[-30.0, -2.0, 0.0, 3.0, 40.0]])
    x = np.array([[0.25, 0.5, 1.0, 0.0, 0.75]])
    expected = (x * special.log_expit(logits) + (1 - x) * special.log_expit(-logits)).sum(-1)
    np.testing.assert_allclose(BERNOULLI.log_density(x, {"logits": logits}), expected, rtol=1e-13)


def test_gaussian_log_density_is_scipys_summed_over_the_data_axis():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(4, 6)).astype(np.float32)
    logvar = rng.normal(size=(4, 6)).astype(np.float32)
    x = rng.normal(size=(4, 6))
    scale = np.sqrt(np.exp(logvar.astype(np.float64)))
    expected = stats.norm(mean.astype(np.float64), scale).logpdf(x).sum(-1)
    np.testing.assert_allclose(GAUSSIAN.log_density(x, {"mean": mean, "logvar": logvar}), expected, rtol=1e-12)


def test_standard_normal_log_density_is_scipys_and_differs_by_the_2pi_term_only():
    z = np.random.default_rng(2).normal(size=(5, 3))
    prior = prior_for("standard_normal", 3)
    expected = stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z)
    np.testing.assert_allclose(prior.log_density(z), expected, rtol=1e-13)
    np.testing.assert_allclose(prior.log_density_less_2pi(z) - 1.5 * math.log(2 * math.pi), expected, rtol=1e-13)


def test_sigmoid_is_exact_and_finite_far_out():
    logits = np.array([-800.0, -40.0, -1.0, 0.0, 2.5, 40.0, 800.0], dtype=np.float32)
    with np.errstate(over="raise"):
        got = sigmoid(logits)
    np.testing.assert_allclose(got, special.expit(logits.astype(np.float64)), rtol=1e-14)
    np.testing.assert_array_equal(BERNOULLI.mean({"logits": logits}), special.expit(logits).astype(np.float32))


def test_gaussian_mean_is_the_decoders_mean():
    mean = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert GAUSSIAN.mean({"mean": mean, "logvar": np.zeros_like(mean)}) is mean


def test_latent_noise_is_default_rng_and_a_prefix_of_a_longer_draw():
    np.testing.assert_array_equal(latent_noise(4, 10, 3), np.random.default_rng(4).standard_normal((10, 3)))
    np.testing.assert_array_equal(latent_noise(4, 10, 3), latent_noise(4, 1000, 3)[:10])
    assert not np.array_equal(latent_noise(4, 10, 3), latent_noise(5, 10, 3))


def test_reparameterisation_scales_and_shifts_every_draw():
    mu = np.array([[1.0, -2.0], [0.0, 3.0]])
    logvar = np.log(np.array([[4.0, 0.25], [1.0, 9.0]]))
    eps = np.array([[1.0, 1.0], [-2.0, 0.5], [0.0, 0.0]])
    expected = np.array([[[3.0, -1.5], [-3.0, -1.75], [1.0, -2.0]], [[1.0, 6.0], [-2.0, 4.5], [0.0, 3.0]]])
    np.testing.assert_allclose(reparameterise(mu, logvar, eps), expected, rtol=1e-15)


def test_prior_draws_scale_with_the_temperature():
    prior = StandardNormal(4)
    cold, warm = prior.sample(generator(9), 50_000, 0.5), prior.sample(generator(9), 50_000)
    np.testing.assert_array_equal(cold, 0.5 * warm)  # the same noise, scaled
    assert cold.shape == (50_000, 4) and abs(warm.std() - 1.0) < 0.01 and abs(warm.mean()) < 0.01


def test_observation_draws_follow_p_x_given_z():
    n = 200_000
    logits = np.full((n, 3), [-2.0, 0.0, 1.5], dtype=np.float32)
    ones = BERNOULLI.sample({"logits": logits}, generator(0)).mean(0)
    p = special.expit([-2.0, 0.0, 1.5])
    assert np.all(np.abs(ones - p) < 5 * np.sqrt(p * (1 - p) / n))  # five binomial standard errors
    mean, logvar = np.full((n, 2), [1.0, -3.0], np.float32), np.full((n, 2), [0.0, math.log(4.0)], np.float32)
    x = GAUSSIAN.sample({"mean": mean, "logvar": logvar}, generator(0))
    assert x.dtype == np.float32
    assert np.all(np.abs(x.mean(0) - [1.0, -3.0]) < 5 * np.array([1.0, 2.0]) / np.sqrt(n))
    assert np.all(np.abs(x.std(0) - [1.0, 2.0]) < 5 * np.array([1.0, 2.0]) / np.sqrt(2 * n))


@pytest.mark.parametrize("points", [1, 3, 40, 1000])
def test_slices_of_k_depend_on_k_alone_and_stay_within_the_bound(points):
    block, chunk = slicing(points, 999, 5, 3, 1024)
    assert chunk == 204  # 1024 // 5 (point, sample) pairs per run, whatever the number of points
    assert 1 <= block <= points and block * chunk * 5 <= 1024
    assert slicing(points, 10, 5, 3, 1024) == (min(points, 20), 10)


def _linear_loglik(model, x, k, seed, work_elements=1 << 22, **kwargs):
    return importance_sampled_loglik(model.encode, model.decode, GAUSSIAN, StandardNormal(model.latent_dim), x,
                                     latent_noise(seed, k, model.latent_dim), work_elements, **kwargs)


def test_the_exact_posterior_gives_the_closed_form_loglik_with_every_weight_equal():
    model = LinearGaussian()
    x = np.random.default_rng(3).standard_normal((6, 5)) * 2
    estimate = _linear_loglik(model, x, 64, 0)
    exact = model.exact_loglik(x)
    # Each weight is p(x) up to z's float32 rounding on its way into the decoder.
    np.testing.assert_allclose(estimate.loglik, exact, atol=1e-5)
    np.testing.assert_allclose(estimate.elbo, exact, atol=1e-5)
    assert estimate.stderr.max() < 1e-5


def test_a_poor_proposal_converges_within_its_standard_error():
    model = LinearGaussian(proposal_shift=0.4, proposal_widen=2.0)
    x = np.random.default_rng(4).standard_normal((4, 5))
    estimate = _linear_loglik(model, x, 20_000, 5)
    error = np.abs(estimate.loglik - model.exact_loglik(x))
    assert np.all(error < 4 * estimate.stderr) and np.all(error < 0.03)
    assert np.all(estimate.elbo < estimate.loglik)


def test_a_bernoulli_model_against_quadrature():
    model = OneDimensionalBernoulli()
    x = np.array([[[[1, 0, 1], [1, 0, 0]]], [[[0, 0, 0], [0, 0, 0]]], [[[1, 1, 1], [1, 1, 1]]]], dtype=np.float32)
    estimate = importance_sampled_loglik(model.encode, model.decode, BERNOULLI, StandardNormal(1), x,
                                         latent_noise(0, 20_000, 1), 1 << 22)
    error = np.abs(estimate.loglik - model.exact_loglik(x))
    assert np.all(error < 4 * estimate.stderr + 1e-4) and np.all(error < 0.02)


def test_slicing_and_batching_change_no_number_and_bound_every_decoder_call():
    model = LinearGaussian(proposal_shift=0.4, proposal_widen=2.0)
    x = np.random.default_rng(5).standard_normal((7, 5))
    rows_seen = []

    def decode(z):
        rows_seen.append(len(z))
        return model.decode(z)

    wide = _linear_loglik(model, x, 999, 11)
    narrow = importance_sampled_loglik(model.encode, decode, GAUSSIAN, StandardNormal(3), x, latent_noise(11, 999, 3),
                                       1024)
    assert sum(rows_seen) == 7 * 999 and max(rows_seen) <= 1024 // 5
    np.testing.assert_allclose(narrow.loglik, wide.loglik, rtol=1e-12)
    alone = importance_sampled_loglik(model.encode, decode, GAUSSIAN, StandardNormal(3), x[4:5],
                                      latent_noise(11, 999, 3), 1024)
    assert alone.loglik[0] == narrow.loglik[4]  # the same slices of K: the same sums, bit for bit


def test_should_stop_is_asked_before_every_slice_and_true_stops_the_work():
    model = LinearGaussian()
    x = np.zeros((3, 5))
    calls = []

    def never():
        calls.append(1)
        return False

    _linear_loglik(model, x, 1000, 0, work_elements=1024, should_stop=never)
    block, chunk = slicing(3, 1000, 5, 3, 1024)
    assert len(calls) == math.ceil(3 / block) * math.ceil(1000 / chunk)

    def at_the_third():
        calls.append(1)
        return len(calls) == 3

    calls.clear()
    with pytest.raises(WorkStopped):
        _linear_loglik(model, x, 1000, 0, work_elements=1024, should_stop=at_the_third)
    assert len(calls) == 3
