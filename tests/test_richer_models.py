"""Mixture-of-Gaussians priors and categorical latents in training: their math against float64 closed forms
and brute-force sums, the three gradient estimators against the exact gradient, short training runs."""

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from training.categorical import categorical_kl, configurations, enumerate_configurations
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import load_dataset
from training.estimators import exact_loglik, importance_sampled_loglik
from training.model import VAE
from training.objectives import check_compatible, training_loss
from training.train import train

TINY_CATEGORICAL = ModelConfig(data_shape=(3,), hidden=(4,), activation="elu", likelihood="bernoulli",
                               latent="categorical", groups=2, categories=3)
BINARY_ROWS = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.float64)


def mixture_vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    vae = VAE(ModelConfig(data_shape=(5,), latent_dim=3, hidden=(), prior="mixture_of_gaussians",
                          prior_components=4)).double()
    with torch.no_grad():
        vae.prior.logits.copy_(torch.tensor([0.5, -1.0, 0.0, 1.2]))
        vae.prior.logvar.copy_(0.5 * torch.randn(4, 3))
    return vae.eval()


def numpy_mixture_log_prob(prior: dict, z: np.ndarray) -> np.ndarray:
    """log sum_c pi_c N(z; mean_c, diag(exp(logvar_c))), float64, from the manifest's lists."""
    log_pi = np.asarray(prior["logits"]) - logsumexp(prior["logits"])
    per_component = [stats.multivariate_normal(m, np.diag(np.exp(v))).logpdf(z)
                     for m, v in zip(prior["mean"], prior["logvar"])]
    return logsumexp(log_pi[:, None] + np.array(per_component).reshape(len(log_pi), -1), axis=0)


def test_mixture_prior_log_density_and_manifest_entry_match_scipy():
    vae = mixture_vae()
    prior = vae.prior.manifest()
    assert prior["type"] == "mixture_of_gaussians"
    assert np.shape(prior["logits"]) == (4,) and np.shape(prior["mean"]) == np.shape(prior["logvar"]) == (4, 3)
    z = np.random.default_rng(0).standard_normal((7, 3)) * 2
    with torch.no_grad():
        ours = vae.prior.log_prob(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(ours, numpy_mixture_log_prob(prior, z), rtol=0, atol=1e-10)


def test_importance_sampling_with_a_mixture_prior_converges_to_the_closed_form():
    """Decoder x = W z + b + N(0, diag(s)) under p(z) = sum_c pi_c N(m_c, S_c):
    p(x) = sum_c pi_c N(x; W m_c + b, W S_c W^T + diag(s))."""
    vae = mixture_vae(1)
    decoder = vae.decoder[0]  # z (3) -> mean (5) and raw log-variance (5)
    with torch.no_grad():
        decoder.weight[5:] = 0.0  # a log-variance that does not depend on z
    weight, bias = decoder.weight[:5].detach().numpy(), decoder.bias[:5].detach().numpy()
    x = np.random.default_rng(2).standard_normal((3, 5))
    with torch.no_grad():
        noise_var = torch.exp(vae.decode(torch.zeros(1, 3, dtype=torch.float64))[1][0]).numpy()  # (5,)
    prior = vae.prior.manifest()
    pi = np.exp(np.asarray(prior["logits"]) - logsumexp(prior["logits"]))
    exact = logsumexp([np.log(p) + stats.multivariate_normal(
        weight @ m + bias, weight @ np.diag(np.exp(v)) @ weight.T + np.diag(noise_var)).logpdf(x)
        for p, m, v in zip(pi, np.array(prior["mean"]), np.array(prior["logvar"]))], axis=0)
    with torch.no_grad():  # a broad proposal N(0, 2^2 I) covers every component
        vae.encoder[0].weight.zero_()
        vae.encoder[0].bias.copy_(torch.tensor([0.0, 0.0, 0.0] + [math.log(4.0)] * 3))
    estimate = importance_sampled_loglik(vae, torch.from_numpy(x), k=40000, generator=torch.Generator().manual_seed(0))
    error = np.abs(estimate.loglik - exact)
    assert np.all(error < 4 * estimate.stderr + 1e-4), (error, estimate.stderr)
    assert np.all(error < 0.05)


def test_configurations_are_every_one_hot_combination_once():
    indices = configurations(3, 4, 0, 64)
    assert indices.shape == (64, 3)
    assert {tuple(row) for row in indices.tolist()} == set(itertools.product(range(4), repeat=3))
    torch.testing.assert_close(configurations(3, 4, 10, 20), indices[10:20])


def test_exact_loglik_and_elbo_match_a_brute_force_float64_sum():
    torch.manual_seed(3)
    vae = VAE(TINY_CATEGORICAL).double().eval()
    with torch.no_grad():
        logits = vae.encode_logits(BINARY_ROWS)  # (4, 2, 3)
        q = torch.softmax(logits, -1).numpy()
        log_joint, elbo_terms = [], []
        for a, b in itertools.product(range(3), repeat=2):
            z = torch.zeros(1, 6, dtype=torch.float64)
            z[0, a], z[0, 3 + b] = 1.0, 1.0
            logit = vae.decode(z)[0][0].numpy()  # (3,)
            log_px_z = (BINARY_ROWS.numpy() * logit - np.logaddexp(0, logit)).sum(-1)  # (4,)
            log_p = log_px_z + math.log(1 / 9)
            q_z = q[:, 0, a] * q[:, 1, b]
            log_joint.append(log_p)
            elbo_terms.append(q_z * (log_p - np.log(q_z)))
    estimate = exact_loglik(vae, BINARY_ROWS)
    np.testing.assert_allclose(estimate.loglik, logsumexp(log_joint, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(estimate.elbo, np.sum(elbo_terms, axis=0), rtol=0, atol=1e-12)
    assert np.all(estimate.stderr == 0)
    # The sum splits into the slices of 512 the same way at any size: 8^4 = 4096 configurations, 8 slices.
    wide = VAE(dataclasses.replace(TINY_CATEGORICAL, groups=4, categories=8)).double().eval()
    with torch.no_grad():
        sliced, _ = enumerate_configurations(wide, BINARY_ROWS, wide.encode_logits(BINARY_ROWS))
        every = torch.eye(8, dtype=torch.float64)[configurations(4, 8, 0, 4096)].flatten(1)  # (4096, 32)
        whole = torch.logsumexp(wide.log_px_given_z(BINARY_ROWS[:, None], every[None]), 1) - 4 * math.log(8)
    torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-10)


def test_categorical_importance_sampling_converges_to_the_exact_sum():
    torch.manual_seed(4)
    vae = VAE(TINY_CATEGORICAL).double().eval()
    exact = exact_loglik(vae, BINARY_ROWS).loglik
    estimate = importance_sampled_loglik(vae, BINARY_ROWS, k=20000, generator=torch.Generator().manual_seed(0))
    error = np.abs(estimate.loglik - exact)
    assert np.all(error < 4 * estimate.stderr + 1e-6), (error, estimate.stderr)


def test_categorical_kl_to_the_uniform_prior():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [2.0, -1.0, 0.5]]], dtype=torch.float64)
    p = np.exp([2.0, -1.0, 0.5]) / np.exp([2.0, -1.0, 0.5]).sum()
    expected = [0.0, float((p * np.log(p * 3)).sum())]
    np.testing.assert_allclose(categorical_kl(logits)[0].numpy(), expected, atol=1e-12)


def encoder_gradient(vae: VAE, x: torch.Tensor, config: TrainConfig, seed: int, state: dict | None = None) -> np.ndarray:
    vae.zero_grad()
    training_loss(vae, x, config, 0, torch.Generator().manual_seed(seed), state).backward()
    return np.concatenate([p.grad.numpy().ravel() for p in vae.encoder.parameters()])


def replicated_gradients(vae, config, replicas, copies, state=None):
    """`replicas` estimates, each averaging `copies` single-draw gradients (the rows repeated), (R, P)."""
    x = BINARY_ROWS.repeat(copies, 1)
    return np.stack([encoder_gradient(vae, x, config, seed, dict(state or {})) for seed in range(replicas)])


@pytest.fixture(scope="module")
def tiny_categorical():
    torch.manual_seed(5)
    vae = VAE(TINY_CATEGORICAL).double()
    exact = encoder_gradient(vae, BINARY_ROWS, TrainConfig(estimator="exact"), 0)
    return vae, exact


@pytest.mark.parametrize("state", [None, {"baseline": -1.8, "baseline_steps": 1, "baseline_decay": 0.0}])
def test_score_function_gradient_is_unbiased(tiny_categorical, state):
    vae, exact = tiny_categorical
    estimates = replicated_gradients(vae, TrainConfig(estimator="score_function"), replicas=40, copies=500, state=state)
    mean, spread = estimates.mean(0), estimates.std(0, ddof=1) / math.sqrt(len(estimates))
    assert np.all(np.abs(mean - exact) < 4.5 * spread + 1e-9), np.abs(mean - exact) / spread
    assert np.linalg.norm(mean - exact) < 0.1 * np.linalg.norm(exact)


def test_gumbel_softmax_gradient_is_biased_but_close_at_low_temperature(tiny_categorical):
    vae, exact = tiny_categorical

    def relative_error(tau: float, straight_through: bool = False) -> float:
        config = TrainConfig(estimator="gumbel_softmax", temperature_start=tau, temperature_end=tau,
                             straight_through=straight_through)
        mean = replicated_gradients(vae, config, replicas=10, copies=2000).mean(0)
        return float(np.linalg.norm(mean - exact) / np.linalg.norm(exact))

    # Measured: 0.4% at tau = 0.2 (mostly the noise of the 80,000 draws), 10% at tau = 5.
    low, high = relative_error(0.2), relative_error(5.0)
    assert low < 0.03 and high > 0.06, (low, high)
    assert relative_error(0.5, straight_through=True) < 0.3


def test_temperature_anneals_geometrically():
    config = TrainConfig(epochs=11, temperature_start=2.0, temperature_end=0.5)
    assert config.temperature(0) == 2.0 and math.isclose(config.temperature(10), 0.5)
    assert math.isclose(config.temperature(5), 1.0)


@pytest.mark.parametrize("model, train_config, message", [
    (ModelConfig(data_shape=(3,), prior="mixture_of_gaussians", prior_components=3), TrainConfig(free_bits=0.1),
     "free_bits"),
    (dataclasses.replace(TINY_CATEGORICAL, groups=13), TrainConfig(estimator="exact"), "score_function"),
    (TINY_CATEGORICAL, TrainConfig(objective="iwae", iw_samples=2), "objective elbo"),
])
def test_incompatible_settings_say_what_to_change(model, train_config, message):
    with pytest.raises(ValueError, match=message):
        check_compatible(model, train_config)


def test_categorical_latent_dim_follows_groups_and_categories():
    assert TINY_CATEGORICAL.latent_dim == 6
    with pytest.raises(ValueError, match="--groups, --categories"):
        ModelConfig(data_shape=(3,), latent="categorical", groups=2, categories=1)


@pytest.mark.parametrize("source, model, train_config", [
    ("digits", ModelConfig(data_shape=(64,), latent_dim=4, hidden=(32,), prior="mixture_of_gaussians",
                           prior_components=5), TrainConfig(epochs=6, batch_size=128, eval_every=3, eval_samples=8)),
    *[("digits-binary", ModelConfig(data_shape=(64,), hidden=(32,), likelihood="bernoulli", latent="categorical",
                                    groups=2, categories=4),
       TrainConfig(epochs=6, batch_size=128, learning_rate=3e-3, eval_every=3, estimator=estimator))
      for estimator in ("exact", "score_function", "gumbel_softmax")],
])
def test_a_short_run_of_each_new_model_lowers_the_loss(tmp_path, source, model, train_config):
    data = DataConfig(source)
    dataset = load_dataset(data, model.likelihood)
    run = train(dataset, data, model, train_config, tmp_path / "run.pt", progress=False)
    losses = [r["train_loss"] for r in run.history]
    assert losses[-1] < losses[0] - 1.0, losses
    if train_config.estimator == "score_function":
        assert run.objective_state["baseline_steps"] == 6 * 10  # 1212 training rows in batches of 128
