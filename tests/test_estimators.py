"""The log-likelihood estimator against exact answers: closed form, quadrature, Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from training.config import ModelConfig
from training.estimators import importance_sampled_loglik
from training.likelihoods import gaussian_kl_per_dim
from training.model import VAE


def exact_linear_gaussian_loglik(x, weight, bias, noise_var):
    covariance = weight @ weight.T + noise_var * np.eye(len(bias))
    return stats.multivariate_normal(bias, covariance).logpdf(x)


def test_exact_posterior_gives_exact_loglik(linear_gaussian):
    vae, weight, bias, noise_var = linear_gaussian
    x = np.random.default_rng(1).standard_normal((6, 5)) * 2
    estimate = importance_sampled_loglik(vae, torch.from_numpy(x), k=50, generator=torch.Generator().manual_seed(0))
    exact = exact_linear_gaussian_loglik(x, weight, bias, noise_var)
    # With q(z|x) = p(z|x) every importance weight equals p(x): no variance at all.
    np.testing.assert_allclose(estimate.loglik, exact, atol=1e-9)
    np.testing.assert_allclose(estimate.elbo, exact, atol=1e-9)
    assert float(estimate.stderr.max()) < 1e-6


def test_streamed_estimate_with_a_poor_proposal_converges_within_its_stderr(linear_gaussian):
    vae, weight, bias, noise_var = linear_gaussian
    with torch.no_grad():  # widen and shift q: the estimate is now random, ELBO strictly below log p(x)
        vae.encoder[0].bias[3:] += math.log(2.0)
        vae.encoder[0].bias[:3] += 0.3
    x = np.random.default_rng(2).standard_normal((4, 5))
    exact = exact_linear_gaussian_loglik(x, weight, bias, noise_var)
    # max_elements = 64 forces one point per block and chunks of 12 samples: the running max is exercised.
    estimate = importance_sampled_loglik(
        vae, torch.from_numpy(x), k=20000, generator=torch.Generator().manual_seed(3), max_elements=64
    )
    error = np.abs(estimate.loglik - exact)
    assert np.all(error < 4 * estimate.stderr + 1e-4), (error, estimate.stderr)
    assert np.all(error < 0.02)
    assert np.all(estimate.elbo < exact - 0.01)  # Jensen's gap is real for a wrong proposal


def test_one_dimensional_bernoulli_model_against_quadrature():
    torch.manual_seed(5)
    vae = VAE(ModelConfig(data_shape=(6,), latent_dim=1, hidden=(8,), activation="elu", likelihood="bernoulli"))
    vae = vae.double().eval()
    with torch.no_grad():  # a broad fixed proposal N(0.2, 1.5^2) covers every posterior of this model
        last = vae.encoder[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.2, math.log(1.5**2)]))
    x = np.array([[1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=np.float64)

    def joint(z: float, row: np.ndarray) -> float:
        with torch.no_grad():
            log_px_z = vae.log_px_given_z(torch.from_numpy(row), torch.tensor([z], dtype=torch.float64))
        return math.exp(float(log_px_z) + stats.norm.logpdf(z))

    exact = [math.log(integrate.quad(joint, -12, 12, args=(row,), epsabs=1e-14, limit=200)[0]) for row in x]
    estimate = importance_sampled_loglik(vae, torch.from_numpy(x), k=40000, generator=torch.Generator().manual_seed(0))
    error = np.abs(estimate.loglik - exact)
    assert np.all(error < 4 * estimate.stderr + 1e-4), (error, estimate.stderr)
    assert np.all(error < 0.01)


@pytest.mark.parametrize("mu, logvar", [(0.0, 0.0), (1.5, -1.0), (-0.7, 0.8)])
def test_analytic_kl_matches_monte_carlo(mu, logvar):
    generator = torch.Generator().manual_seed(0)
    std = math.exp(0.5 * logvar)
    z = mu + std * torch.randn(400_000, generator=generator, dtype=torch.float64)
    log_ratio = stats.norm.logpdf(z, mu, std) - stats.norm.logpdf(z)
    monte_carlo, spread = log_ratio.mean(), log_ratio.std() / math.sqrt(len(log_ratio))
    analytic = float(gaussian_kl_per_dim(torch.tensor([mu]), torch.tensor([logvar]))[0])
    assert abs(analytic - monte_carlo) < 4 * spread + 1e-6
