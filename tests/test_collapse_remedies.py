"""Collapse remedies: the mutual-information estimate against exact answers, the aggressive schedule's
stopping rules, encoder-only steps, the command-line options."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from training.aggressive import drop_gradients, encoder_and_rest, stays_aggressive, update_encoder_until_converged
from training.cli import _configs, build_parser
from training.config import ModelConfig, TrainConfig
from training.information import mutual_information
from training.model import VAE
from training.objectives import check_compatible, training_loss


def test_mutual_information_of_a_one_dimensional_code_against_quadrature():
    # x uniform over 40 rows, q(z|x_n) = N(mu_n, s_n^2): I = (1/N) sum_n int q_n log(q_n / q), q the mixture.
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(0, 1.5, size=(40, 1)), rng.uniform(-2, 0, size=(40, 1))
    z = np.linspace(-12, 12, 40001)
    densities = norm.pdf(z[None], mu, np.exp(logvar / 2))  # (N, Z)
    aggregate = densities.mean(0)  # (Z,)
    integrand = densities * (np.log(densities + 1e-300) - np.log(aggregate))
    exact = float(np.trapezoid(integrand, z, axis=1).mean())
    estimate = mutual_information(torch.from_numpy(mu), torch.from_numpy(logvar), samples=2000,
                                  generator=torch.Generator().manual_seed(0))
    assert 0.5 < exact < math.log(40)
    assert estimate == pytest.approx(exact, abs=0.01)


def test_mutual_information_of_a_linear_gaussian_encoder_against_the_closed_form():
    # x ~ N(0, I_3), q(z|x) = N(A x, s^2 I_2): q(z) = N(0, A A^T + s^2 I) and I = 1/2 log det(I + A A^T / s^2).
    rng = np.random.default_rng(1)
    a, noise_var = rng.normal(size=(2, 3)), 0.5
    exact = 0.5 * np.linalg.slogdet(np.eye(2) + a @ a.T / noise_var)[1]
    x = rng.standard_normal((6000, 3))
    mu = torch.from_numpy(x @ a.T)
    logvar = torch.full_like(mu, math.log(noise_var))
    estimate = mutual_information(mu, logvar, samples=4, generator=torch.Generator().manual_seed(0))
    assert estimate == pytest.approx(exact, abs=0.03)  # 6000 rows stand in for the population


def test_a_code_that_ignores_x_carries_no_information():
    mu, logvar = torch.zeros(50, 4, dtype=torch.float64), torch.zeros(50, 4, dtype=torch.float64)
    assert mutual_information(mu, logvar, generator=torch.Generator().manual_seed(0)) == pytest.approx(0, abs=1e-12)


def _scripted(losses):
    calls = []

    def step():
        calls.append(1)
        return losses[len(calls) - 1]

    return step, calls


def test_inner_loop_stops_when_the_mean_loss_over_a_window_stops_falling():
    losses = [10, 9, 8, 7, 6, 5, 5.5, 5.2, 6, 6, 7, 7] + [0] * 20  # windows of 3: 9, 6, 5.57 (falls), 6.33 (rises)
    step, calls = _scripted(losses)
    assert update_encoder_until_converged(step, max_steps=30, window=3) == 12
    assert len(calls) == 12


def test_inner_loop_stops_at_the_step_limit_while_the_loss_still_falls():
    step, calls = _scripted([100 - i for i in range(100)])
    assert update_encoder_until_converged(step, max_steps=25, window=10) == 25 and len(calls) == 25


def test_aggressive_phase_ends_when_mutual_information_falls():
    assert stays_aggressive(-math.inf, 0.1)
    assert stays_aggressive(1.0, 1.2) and stays_aggressive(1.0, 1.0)
    assert not stays_aggressive(1.2, 1.1)


def test_an_encoder_step_leaves_the_decoder_untouched(tiny_vae):
    encoder, rest = encoder_and_rest(tiny_vae)
    assert {id(p) for p in encoder} | {id(p) for p in rest} == {id(p) for p in tiny_vae.parameters()}
    optimizer = torch.optim.Adam(tiny_vae.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in tiny_vae.parameters()]
    x = (torch.rand(8, 16, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    training_loss(tiny_vae, x, TrainConfig(), 0, torch.Generator().manual_seed(1)).backward()
    drop_gradients(rest)
    optimizer.step()
    moved = {id(p) for p, old in zip(tiny_vae.parameters(), before) if not torch.equal(p, old)}
    assert moved == {id(p) for p in encoder}


def test_aggressive_training_needs_gaussian_latents():
    model = ModelConfig(data_shape=(4,), likelihood="bernoulli", latent="categorical", groups=2, categories=3)
    with pytest.raises(ValueError, match="aggressive training follows I"):
        check_compatible(model, TrainConfig(aggressive=True))


def test_cli_options_reach_the_configs():
    args = build_parser().parse_args([
        "train", "--dataset", "digits-binary", "--likelihood", "bernoulli", "--decoder", "made",
        "--decoder-hidden", "64,32", "--x-dropout", "0.25", "--aggressive", "yes", "--aggressive-max-steps", "50",
        "--aggressive-window", "15"])
    _, _, model, train = _configs(args)
    assert (model.decoder, model.decoder_hidden, model.x_dropout) == ("made", (64, 32), 0.25)
    assert (train.aggressive, train.aggressive_max_steps, train.aggressive_window) == (True, 50, 15)
    vae = VAE(model)
    assert vae.autoregressive and vae.decoder.x_dropout == 0.25
    assert [layer.out_features for layer in vae.decoder.masked] == [64, 32, 1]


def test_collapse_doc_reports_the_rows_and_names_collapsed_ones():
    from training.collapse import collapse_markdown

    def run(loglik, units, seconds):
        return {"test_loglik": loglik, "test_elbo": loglik - 1, "test_kl": units * 0.3, "active_units": units,
                "mutual_information": units * 0.2, "train_seconds": seconds, "best_epoch": 10, "epochs": 10,
                "aggressive_epochs": 3, "test_loglik_is_stderr": 0.004}

    labels = ["plain ELBO", "KL warm-up", "aggressive inference (He et al.)", "factorised decoder"]
    rows = [{"label": labels[0], "runs": [run(-20.0, 0, 10), run(-20.2, 0, 12)]},
            {"label": labels[1], "runs": [run(-18.0, 5, 10), run(-18.4, 7, 10)]},
            {"label": labels[2], "runs": [run(-18.5, 6, 30), run(-18.5, 6, 30)]},
            {"label": labels[3], "runs": [run(-19.0, 3, 5), run(-19.0, 3, 5)]}]
    text = collapse_markdown(rows, "python -m training collapse-study --epochs 10", 10, 2, 100)
    assert "Written by `python -m training collapse-study --epochs 10`" in text
    assert "| plain ELBO | -20.10 ± 0.10 | -21.10 ± 0.10 | 0.00 ± 0.00 | 0.0 ± 0.0 |" in text
    assert "the posterior collapsed" in text and "Rows with no active units: plain ELBO." in text
    assert "Best MADE row by test log p(x): KL warm-up (-18.20)" in text
    assert "aggressive inference (He et al.): log p(x) +1.60 against plain" in text and "2.7x its train time" in text
    assert "no row had converged" in text and "is 0.0040 nats" in text
