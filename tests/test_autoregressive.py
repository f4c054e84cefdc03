"""MADE decoders: the autoregressive property (PyTorch and the exported graph), teacher forcing against the
sequential conditionals, x-dropout in training mode only, importance-sampled log p(x) against quadrature."""

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import training.export as export
from modelrepo import check_graphs, load_manifest
from training.config import ModelConfig
from training.estimators import importance_sampled_loglik
from training.likelihoods import bernoulli_log_prob, gaussian_log_prob
from training.model import VAE

SHAPE = (2, 3)  # 6 positions, C order


def made_vae(likelihood: str, x_dropout: float = 0.0, latent_dim: int = 3) -> VAE:
    torch.manual_seed(0)
    config = ModelConfig(data_shape=SHAPE, latent_dim=latent_dim, hidden=(16,), likelihood=likelihood,
                         decoder="made", decoder_hidden=(24, 24), x_dropout=x_dropout)
    return VAE(config).eval()


def _data(rng: np.random.Generator, n: int, likelihood: str) -> np.ndarray:
    if likelihood == "bernoulli":
        return (rng.uniform(size=(n, 6)) < 0.5).astype(np.float32)
    return rng.standard_normal((n, 6)).astype(np.float32)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_output_at_d_depends_on_earlier_positions_only(likelihood):
    vae, rng = made_vae(likelihood), np.random.default_rng(0)
    z, x = torch.from_numpy(rng.standard_normal((5, 3)).astype(np.float32)), torch.from_numpy(_data(rng, 5, likelihood))
    with torch.no_grad():
        base = vae.decode(z, x)
        for d in range(6):
            later = x.clone()
            later[:, d:] = torch.from_numpy(_data(rng, 5, likelihood))[:, d:]  # change every x_j, j >= d
            for got, want in zip(vae.decode(z, later), base):
                assert torch.equal(got[:, d], want[:, d])
            if d > 0:  # and the masks are not stricter than they need be: x_{d-1} does reach position d
                earlier = x.clone()
                earlier[:, d - 1] += 1.0
                assert not torch.equal(vae.decode(z, earlier)[0][:, d], base[0][:, d])


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_exported_decoder_is_autoregressive_and_matches_pytorch(tmp_path, likelihood):
    vae, rng = made_vae(likelihood), np.random.default_rng(1)
    folder = export.export_model(vae, tmp_path, "ar", 1)
    manifest = load_manifest(folder)
    check_graphs(manifest, folder)
    assert manifest.likelihood.type == likelihood and manifest.likelihood.autoregressive is True
    decoder = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in decoder.get_inputs()] == ["z", "x"]
    graph = onnx.load(str(folder / "decoder.onnx")).graph  # masks baked in: no mask tensors, no Mul by them
    assert not any(init.name.endswith(".mask") for init in graph.initializer)
    assert not any(node.op_type == "Mul" for node in graph.node)
    names = ["logits"] if likelihood == "bernoulli" else ["mean", "logvar"]
    for batch in (1, 4):
        z = rng.standard_normal((batch, 3)).astype(np.float32)
        x = _data(rng, batch, likelihood)
        base = decoder.run(names, {"z": z, "x": x.reshape(batch, *SHAPE)})
        with torch.no_grad():
            wanted = vae.decode(torch.from_numpy(z), torch.from_numpy(x))
        for got, want in zip(base, wanted):
            assert got.shape == (batch, *SHAPE)
            np.testing.assert_allclose(got.reshape(batch, 6), want.numpy(), atol=1e-5)
        for d in range(6):
            later = x.copy()
            later[:, d:] = _data(rng, batch, likelihood)[:, d:] + 3.0  # any values at j >= d
            changed = decoder.run(names, {"z": z, "x": later.reshape(batch, *SHAPE)})
            for got, want in zip(changed, base):
                np.testing.assert_array_equal(got.reshape(batch, 6)[:, d], want.reshape(batch, 6)[:, d])


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_teacher_forced_log_likelihood_is_the_sum_of_sequential_conditionals(likelihood):
    vae, rng = made_vae(likelihood).double(), np.random.default_rng(2)
    z = torch.from_numpy(rng.standard_normal((4, 3)))
    x = torch.from_numpy(_data(rng, 4, likelihood)).double()
    with torch.no_grad():
        one_pass = vae.log_px_given_z(x, z)  # (4,)
        sequential = torch.zeros(4, dtype=torch.float64)
        for d in range(6):  # p(x_d | z, x_<d): the decoder sees x_<d only; positions >= d hold junk
            seen = torch.cat([x[:, :d], torch.from_numpy(rng.standard_normal((4, 6 - d)))], dim=1)
            params = [p[:, d : d + 1] for p in vae.decode(z, seen)]
            log_prob = bernoulli_log_prob if likelihood == "bernoulli" else gaussian_log_prob
            sequential += log_prob(x[:, d : d + 1], *params)
    np.testing.assert_allclose(one_pass.numpy(), sequential.numpy(), rtol=1e-12, atol=1e-12)


def test_x_dropout_acts_in_training_mode_only():
    vae, rng = made_vae("bernoulli", x_dropout=0.5), np.random.default_rng(3)
    z = torch.from_numpy(rng.standard_normal((64, 3)).astype(np.float32))
    x = torch.ones(64, 6)
    with torch.no_grad():
        full = vae.decode(z, x)[0]
        assert torch.equal(vae.decode(z, x)[0], full)  # eval: deterministic, full x
        vae.train()
        torch.manual_seed(5)
        dropped = vae.decode(z, x)[0]
        torch.manual_seed(5)
        kept = (torch.rand_like(x) >= 0.5).float()  # the same draws the decoder made
        vae.eval()
        assert torch.equal(dropped, vae.decode(z, x * kept)[0])  # = eval on x with those positions zeroed
    assert 0.3 < 1 - kept.mean() < 0.7 and not torch.equal(dropped, full)


def test_importance_sampled_log_likelihood_matches_quadrature_for_a_one_dimensional_latent():
    vae = made_vae("bernoulli", latent_dim=1).double()
    x = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float64)
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)[:, None]  # (G, 1)
    with torch.no_grad():
        log_joint = vae.log_px_given_z(x[:, None], grid[None]) - 0.5 * (math.log(2 * math.pi) + grid[:, 0] ** 2)
        exact = torch.logsumexp(log_joint, dim=1) + math.log(float(grid[1, 0] - grid[0, 0]))  # (2,) trapezoid
        estimate = importance_sampled_loglik(vae, x, 20000, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(estimate.loglik, exact.numpy(), atol=5 * estimate.stderr.max() + 1e-4)
    assert np.all(estimate.elbo <= exact.numpy())


def test_made_config_errors():
    with pytest.raises(ValueError, match="x_dropout weakens an autoregressive decoder"):
        ModelConfig(data_shape=(4,), x_dropout=0.2)
    with pytest.raises(ValueError, match="decoder must be 'mlp' or 'made'"):
        ModelConfig(data_shape=(4,), decoder="pixelcnn")
    with pytest.raises(ValueError, match=r"x_dropout must be in \[0, 1\)"):
        ModelConfig(data_shape=(4,), decoder="made", x_dropout=1.0)


@pytest.mark.parametrize("model_overrides, train_overrides", [
    ({}, {"objective": "iwae", "iw_samples": 3, "warmup_epochs": 2}),
    ({"x_dropout": 0.2}, {"free_bits": 0.1, "warmup_epochs": 2}),
    ({"prior": "mixture_of_gaussians", "prior_components": 3}, {}),
    ({}, {"aggressive": True, "aggressive_max_steps": 6, "aggressive_window": 2}),
])
def test_every_objective_trains_and_evaluates_a_made_decoder(tmp_path, model_overrides, train_overrides):
    from training.config import DataConfig, TrainConfig
    from training.data import load_dataset
    from training.evaluate import evaluate
    from training.train import train

    data = DataConfig("digits-binary")
    dataset = load_dataset(data, "bernoulli")
    model = ModelConfig(data_shape=(64,), latent_dim=2, hidden=(16,), likelihood="bernoulli", decoder="made",
                        decoder_hidden=(32,), **model_overrides)
    config = TrainConfig(epochs=2, batch_size=256, eval_every=1, eval_samples=4, **train_overrides)
    checkpoint = train(dataset, data, model, config, tmp_path / "run.pt", progress=False)
    if config.aggressive:
        assert all(r["encoder_steps"] >= 2 and "val_mutual_information" in r
                   for r in checkpoint.history[: 1 + int(checkpoint.objective_state.get("aggressive", 1.0) > 0)])
    metrics = evaluate(checkpoint.best_model(), dataset.test[:40], k=20, progress=False)
    assert -64 * math.log(2) - 20 < metrics["test_elbo"] <= metrics["test_loglik"] < 0
    assert 0 <= metrics["mutual_information"] <= math.log(40) + 0.05
