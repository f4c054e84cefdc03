"""Training: determinism, exact resume, every objective, checkpoint selection on validation."""

import math

import numpy as np
import pytest
import torch

from training.checkpoint import CheckpointError, load_checkpoint
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import load_dataset
from training.objectives import elbo_terms, training_loss
from training.train import train

DATA = DataConfig("digits")
MODEL = ModelConfig(data_shape=(64,), latent_dim=4, hidden=(32,), likelihood="gaussian")
FAST = TrainConfig(epochs=4, batch_size=128, warmup_epochs=2, eval_every=2, eval_samples=8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DATA, "gaussian")


def _states_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_result(tmp_path, digits):
    first = train(digits, DATA, MODEL, FAST, tmp_path / "a.pt", progress=False)
    second = train(digits, DATA, MODEL, FAST, tmp_path / "b.pt", progress=False)
    assert _states_equal(first.model_state, second.model_state)
    assert first.history == second.history
    other = train(digits, DATA, MODEL, TrainConfig(**{**FAST.to_dict(), "seed": 1}), tmp_path / "c.pt", progress=False)
    assert not _states_equal(first.model_state, other.model_state)


def test_resume_continues_exactly_where_an_uninterrupted_run_ends(tmp_path, digits):
    whole = train(digits, DATA, MODEL, FAST, tmp_path / "whole.pt", progress=False)
    half = TrainConfig(**{**FAST.to_dict(), "epochs": 2})
    train(digits, DATA, MODEL, half, tmp_path / "part.pt", progress=False)
    # Pretend the run was stopped after epoch 2 of 4: same checkpoint, full schedule.
    partial = load_checkpoint(tmp_path / "part.pt")
    partial.train_config, partial.finished = FAST, False
    from training.checkpoint import save_checkpoint

    save_checkpoint(partial, tmp_path / "part.pt")
    resumed = train(digits, DATA, MODEL, FAST, tmp_path / "part.pt", resume=True, progress=False)
    assert resumed.epochs_done == 4
    assert _states_equal(resumed.model_state, whole.model_state)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]


def test_an_unfinished_run_is_not_overwritten_without_resume(tmp_path, digits):
    from training.checkpoint import save_checkpoint

    run = train(digits, DATA, MODEL, FAST, tmp_path / "run.pt", progress=False)
    run.finished = False
    save_checkpoint(run, tmp_path / "run.pt")
    with pytest.raises(ValueError, match="unfinished run .* pass --resume"):
        train(digits, DATA, MODEL, FAST, tmp_path / "run.pt", progress=False)


def test_resume_refuses_other_settings(tmp_path, digits):
    train(digits, DATA, MODEL, FAST, tmp_path / "run.pt", progress=False)
    other = TrainConfig(**{**FAST.to_dict(), "beta": 2.0})
    with pytest.raises(ValueError, match="other settings"):
        train(digits, DATA, MODEL, other, tmp_path / "run.pt", resume=True, progress=False)


def test_best_checkpoint_is_the_best_validation_score(tmp_path, digits):
    run = train(digits, DATA, MODEL, TrainConfig(epochs=6, batch_size=128, eval_every=1, eval_samples=8),
                tmp_path / "run.pt", progress=False)
    scores = [r["val_loglik"] for r in run.history]
    assert run.best_score == max(scores) and run.best_epoch == 1 + int(np.argmax(scores))
    reloaded = load_checkpoint(tmp_path / "run.pt")
    assert _states_equal(reloaded.best_model().state_dict(), run.best_state)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_kl_warmup_and_free_bits_change_the_loss_as_defined(tiny_vae):
    x = torch.rand(32, 16).round()
    config = TrainConfig(beta=2.0, warmup_epochs=4)
    assert [config.kl_weight(e) for e in range(5)] == [0.5, 1.0, 1.5, 2.0, 2.0]
    generator = lambda: torch.Generator().manual_seed(0)
    reconstruction, kl = elbo_terms(tiny_vae, x, generator())
    for epoch in (0, 3):
        loss = training_loss(tiny_vae, x, config, epoch, generator())
        expected = -(reconstruction.mean() - config.kl_weight(epoch) * kl.mean(0).sum())
        assert torch.allclose(loss, expected)
    assert kl.mean(0).max() < 5.0
    free = TrainConfig(free_bits=5.0)
    loss = training_loss(tiny_vae, x, free, 0, generator())
    assert torch.allclose(loss, -(reconstruction.mean() - kl.mean(0).clamp_min(5.0).sum()))
    # Every dimension is below the threshold, so the KL sends no gradient: only the reconstruction does.
    grads = torch.autograd.grad(loss, list(tiny_vae.encoder.parameters()))
    rec_only = torch.autograd.grad(-elbo_terms(tiny_vae, x, generator())[0].mean(), list(tiny_vae.encoder.parameters()))
    assert all(torch.allclose(a, b) for a, b in zip(grads, rec_only))


def test_importance_weighted_bound_is_tighter_than_the_elbo(tiny_vae):
    x = torch.rand(64, 16).round()
    with torch.no_grad():
        elbo = training_loss(tiny_vae, x, TrainConfig(), 0, torch.Generator().manual_seed(0))
        iwae = training_loss(tiny_vae, x, TrainConfig(objective="iwae", iw_samples=64), 0, torch.Generator().manual_seed(0))
    assert iwae < elbo  # a loss: the k = 64 bound is the larger bound


def test_lr_schedule():
    config = TrainConfig(epochs=10, learning_rate=1e-3, lr_schedule="cosine")
    assert config.learning_rate_at(0) == 1e-3 and math.isclose(config.learning_rate_at(5), 5e-4)
    assert config.learning_rate_at(9) < 3e-5


@pytest.mark.parametrize(
    "kwargs, message",
    [({"objective": "iwae", "free_bits": 1.0}, "free_bits applies"), ({"val_fraction": 1.0}, "val_fraction"),
     ({"iw_samples": 0}, "iw_samples"), ({"objective": "vq"}, "objective")],
)
def test_bad_train_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
