"""Export of the richer models (shared/CONTRACT.md, "Richer models"): the manifest's prior and latent
entries, the categorical graphs' names and shapes, and ONNX Runtime against PyTorch."""

import itertools
import json
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from scipy.special import logsumexp

import training.export as export
from training.config import ModelConfig
from training.estimators import exact_loglik
from training.model import VAE
from tests.test_richer_models import numpy_mixture_log_prob


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_mixture_prior_is_exported_as_the_trained_parameters(tmp_path):
    torch.manual_seed(0)
    vae = VAE(ModelConfig(data_shape=(2, 3), latent_dim=3, hidden=(8,), prior="mixture_of_gaussians",
                          prior_components=4))
    with torch.no_grad():
        vae.prior.logits.copy_(torch.tensor([0.3, -0.2, 1.0, 0.0]))
        vae.prior.logvar.normal_()
    folder = export.export_model(vae.eval(), tmp_path, "mog", 1)
    manifest = json.loads((folder / "manifest.json").read_text())
    prior = manifest["prior"]
    assert set(prior) == {"type", "logits", "mean", "logvar"} and prior["type"] == "mixture_of_gaussians"
    np.testing.assert_array_equal(np.float32(prior["logits"]), vae.prior.logits.detach().numpy())
    np.testing.assert_array_equal(np.float32(prior["mean"]), vae.prior.mean.detach().numpy())
    np.testing.assert_array_equal(np.float32(prior["logvar"]), vae.prior.logvar.detach().numpy())
    z = np.random.default_rng(0).standard_normal((5, 3))
    with torch.no_grad():
        ours = vae.prior.log_prob(torch.from_numpy(z).float()).numpy()
    np.testing.assert_allclose(numpy_mixture_log_prob(prior, z), ours, atol=1e-5)
    assert "latent" not in manifest and manifest["latent_dim"] == 3
    mu, logvar = _session(folder / "encoder.onnx").run(["mu", "logvar"], {"x": np.zeros((2, 2, 3), np.float32)})
    assert mu.shape == logvar.shape == (2, 3)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_categorical_graphs_keep_the_contract_and_match_pytorch(tmp_path, likelihood):
    torch.manual_seed(1)
    vae = VAE(ModelConfig(data_shape=(1, 2, 3), hidden=(16,), likelihood=likelihood, latent="categorical",
                          groups=2, categories=3)).eval()
    folder = export.export_model(vae, tmp_path, "discrete", 1)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["latent"] == {"type": "categorical", "groups": 2, "categories": 3}
    assert manifest["prior"] == {"type": "uniform_categorical"} and manifest["latent_dim"] == 6
    encoder, decoder = _session(folder / "encoder.onnx"), _session(folder / "decoder.onnx")
    assert [(o.name, o.shape) for o in encoder.get_outputs()] == [("logits", ["batch", 2, 3])]
    assert [(i.name, i.shape) for i in decoder.get_inputs()] == [("z", ["batch", 2, 3])]
    rng = np.random.default_rng(2)
    for batch in (1, 4, 17):
        x = rng.uniform(size=(batch, 1, 2, 3)).astype(np.float32)
        (logits,) = encoder.run(["logits"], {"x": x})
        with torch.no_grad():
            want = vae.encode_logits(torch.from_numpy(x).flatten(1)).numpy()
        np.testing.assert_allclose(logits, want, atol=1e-5)
        z = rng.dirichlet(np.ones(3), size=(batch, 2)).astype(np.float32)  # relaxed z is a valid input too
        outputs = decoder.run(None, {"z": z})
        with torch.no_grad():
            wanted = vae.decode(torch.from_numpy(z).flatten(1))
        for got, expected in zip(outputs, wanted):
            np.testing.assert_allclose(got, expected.reshape(batch, 1, 2, 3).numpy(), atol=1e-5)


def test_exported_categorical_model_gives_training_exact_loglik(tmp_path):
    """log p(x) summed over all 9 configurations through the ONNX graphs in float64 = training's figure."""
    torch.manual_seed(2)
    vae = VAE(ModelConfig(data_shape=(4,), hidden=(8,), likelihood="bernoulli", latent="categorical",
                          groups=2, categories=3)).eval()
    folder = export.export_model(vae, tmp_path, "discrete", 1)
    x = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]], dtype=np.float32)
    every = np.stack([np.eye(3)[list(c)] for c in itertools.product(range(3), repeat=2)]).astype(np.float32)
    (logits,) = _session(folder / "decoder.onnx").run(["logits"], {"z": every})  # (9, 4)
    logits = logits.astype(np.float64)
    log_px_z = x.astype(np.float64) @ logits.T - np.logaddexp(0, logits).sum(-1)  # (3, 9)
    onnx_loglik = logsumexp(log_px_z - math.log(9), axis=1)
    np.testing.assert_allclose(onnx_loglik, exact_loglik(vae, torch.from_numpy(x)).loglik, atol=1e-5)
