"""modelrepo.categorical and the richer priors of modelrepo.likelihood against exact answers: scipy's densities in
float64, brute-force enumeration, and chi-square tests of the draws."""

import itertools

import numpy as np
import pytest
from scipy import special, stats

from modelrepo.categorical import (
    categorical_importance_loglik,
    category_noise,
    configurations,
    draw_categories,
    enumerated_loglik,
)
from modelrepo.likelihood import Categorical, MixtureOfGaussians, generator, likelihood_for, prior_for
from modelrepo.manifest import MixtureOfGaussiansPrior
from tests.service.handmade import SmallCategorical

BERNOULLI = likelihood_for("bernoulli")
PRIOR_LOGITS = [[1.0, -0.5, 0.0], [-1.0, 0.5, 2.0]]
POINTS = np.array([[0, 0, 0, 0], [1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 0], [0.5, 0.25, 1, 0]], dtype=np.float32)


def graphs(model: SmallCategorical, decoded_rows: list[int] | None = None):
    """The model's encoder and decoder as float64 NumPy functions; decoded_rows records each decoder call's rows."""
    def decode(z):
        if decoded_rows is not None:
            decoded_rows.append(len(z))
        return {"logits": z.reshape(len(z), -1).astype(np.float64) @ model.decoder_weight + model.decoder_bias}

    return (lambda x: (model.encode(x.astype(np.float64)),)), decode


def test_mixture_log_density_is_scipys_log_sum_over_components():
    rng = np.random.default_rng(0)
    logits, mean, logvar = rng.normal(size=3), rng.normal(size=(3, 4)), rng.normal(scale=0.5, size=(3, 4))
    prior = MixtureOfGaussians(logits, mean, logvar)
    z = rng.normal(scale=2.0, size=(2, 5, 4))
    components = [special.log_softmax(logits)[c] + stats.multivariate_normal(mean[c], np.diag(np.exp(logvar[c])))
                  .logpdf(z) for c in range(3)]
    np.testing.assert_allclose(prior.log_density(z), special.logsumexp(components, axis=0), rtol=1e-12)
    assert prior.log_density(z).shape == (2, 5)


def test_prior_for_reads_the_manifests_prior():
    spec = MixtureOfGaussiansPrior(type="mixture_of_gaussians", logits=[0.0, 1.0], mean=[[1.0], [-1.0]],
                                   logvar=[[0.0], [0.5]])
    prior = prior_for(spec, (1,))
    z = np.array([[0.3]])
    expected = np.log(special.softmax([0.0, 1.0]) @ [stats.norm(1, 1).pdf(0.3), stats.norm(-1, np.exp(0.25)).pdf(0.3)])
    np.testing.assert_allclose(prior.log_density(z), [expected], rtol=1e-12)
    uniform = prior_for("uniform_categorical", (2, 3))
    np.testing.assert_allclose(uniform.log_density(np.eye(3)[[0, 2]][None]), [2 * np.log(1 / 3)], rtol=1e-14)


def test_categorical_prior_draws_follow_softmax_of_logits_over_temperature():
    prior = Categorical(PRIOR_LOGITS)
    for temperature in (1.0, 0.5, 3.0):
        z = prior.sample(generator(1), 20_000, temperature)
        assert z.shape == (20_000, 2, 3) and np.all(z.sum(-1) == 1)
        expected = special.softmax(np.array(PRIOR_LOGITS) / temperature, axis=-1) * 20_000
        for group in range(2):
            assert stats.chisquare(z[:, group].sum(0), expected[group]).pvalue > 1e-3
    ties = Categorical([[1.0, 1.0, 0.0]]).sample(generator(2), 3000, 0.0)  # t = 0: the most likely, ties even
    assert ties[:, 0, 2].sum() == 0 and stats.chisquare(ties[:, 0, :2].sum(0)).pvalue > 1e-3


def test_draw_categories_inverts_q_cumulative_distribution():
    q = np.array([[[0.2, 0.0, 0.8]], [[0.5, 0.25, 0.25]]])  # (N=2, G=1, C=3), a zero probability
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    np.testing.assert_array_equal(draw_categories(log_q, np.array([[0.0], [0.2], [0.999]]))[0, :, 0], [0, 2, 2])
    draws = draw_categories(log_q, category_noise(0, 30_000, 1))  # (2, 30000, 1)
    zero_skipped = np.bincount(draws[0, :, 0], minlength=3)
    assert zero_skipped[1] == 0 and stats.chisquare(zero_skipped[[0, 2]], [6000, 24000]).pvalue > 1e-3
    assert stats.chisquare(np.bincount(draws[1, :, 0], minlength=3), q[1, 0] * 30_000).pvalue > 1e-3


def test_configurations_count_in_base_c_first_group_most_significant():
    expected = np.array(list(itertools.product(range(3), repeat=2)))
    np.testing.assert_array_equal(configurations(0, 9, 2, 3), expected)
    np.testing.assert_array_equal(configurations(4, 7, 2, 3), expected[4:7])


@pytest.mark.parametrize("prior_logits", [None, PRIOR_LOGITS])
@pytest.mark.parametrize("work_elements", [1 << 22, 40, 4])
def test_enumeration_is_the_brute_force_sum_however_it_is_sliced(prior_logits, work_elements):
    model = SmallCategorical(prior_logits)
    decoded_rows = []
    encode, decode = graphs(model, decoded_rows)
    prior = Categorical(np.zeros((2, 3)) if prior_logits is None else prior_logits)
    estimate = enumerated_loglik(encode, decode, BERNOULLI, prior, POINTS, work_elements)
    loglik, elbo = model.exact(POINTS)
    np.testing.assert_allclose(estimate.loglik, loglik, rtol=1e-13)
    np.testing.assert_allclose(estimate.elbo, elbo, rtol=1e-12)
    assert np.all(estimate.stderr == 0)
    # Every configuration decoded once for all the points, in slices within the bound (1 row at the least)
    assert sum(decoded_rows) == 9 and max(decoded_rows) <= max(1, work_elements // 6)


def test_importance_sampling_over_categories_converges_to_the_exact_sum():
    model = SmallCategorical(PRIOR_LOGITS)
    encode, decode = graphs(model)
    prior = Categorical(PRIOR_LOGITS)
    loglik, _ = model.exact(POINTS)
    estimate = categorical_importance_loglik(encode, decode, BERNOULLI, prior, POINTS, category_noise(3, 20_000, 2),
                                             1 << 22)
    error = np.abs(estimate.loglik - loglik)  # the encoder is a poor proposal: k = 20000 for 0.1 nats
    assert np.all(error < 4 * estimate.stderr) and np.all(error < 0.1)
    sliced = categorical_importance_loglik(encode, decode, BERNOULLI, prior, POINTS, category_noise(3, 20_000, 2), 64)
    np.testing.assert_allclose(sliced.loglik, estimate.loglik, rtol=1e-12)
    alone = categorical_importance_loglik(encode, decode, BERNOULLI, prior, POINTS[2:3], category_noise(3, 20_000, 2),
                                          1 << 22)
    assert alone.loglik[0] == pytest.approx(estimate.loglik[2], rel=1e-12)


def test_the_gaussian_estimator_uses_the_models_prior():
    from modelrepo.likelihood import StandardNormal, importance_sampled_loglik, latent_noise
    from tests.service.handmade import LinearGaussian

    model, gaussian = LinearGaussian(proposal_widen=2.0), likelihood_for("gaussian")
    x = np.random.default_rng(5).standard_normal((3, 5))
    eps = latent_noise(1, 500, 3)

    def estimate(prior):
        return importance_sampled_loglik(model.encode, model.decode, gaussian, prior, x, eps, 1 << 22)

    # A one-component mixture at N(0, I) is the standard normal; a shifted one moves every log-weight by
    # log N(z; m, I) - log N(z; 0, I) = m.z - |m|^2 / 2, whose effect on the estimate is checked in closed form.
    standard = estimate(StandardNormal(3))
    np.testing.assert_allclose(estimate(MixtureOfGaussians([0.0], np.zeros((1, 3)), np.zeros((1, 3)))).loglik,
                               standard.loglik, rtol=1e-13)
    shift = np.array([0.5, -0.25, 0.0])
    shifted = estimate(MixtureOfGaussians([0.0], shift[None], np.zeros((1, 3)))).elbo
    mu, logvar = model.encode(x)
    z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps  # (N, K, L)
    np.testing.assert_allclose(shifted - standard.elbo, (z @ shift - shift @ shift / 2).mean(1), rtol=1e-10)
