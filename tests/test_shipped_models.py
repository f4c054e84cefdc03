"""The shipped models keep the contract, and their files reproduce the figures their manifests claim.

The check recomputes the test-split ELBO and log-likelihood from the ONNX files alone, with an importance
sampler written here in float64 NumPy (independent of training/), and compares with the manifest.
"""

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from scipy.special import logsumexp

from modelrepo import check_graphs, load_manifest, sha256_of
from training.config import DataConfig
from training.data import load_dataset
from training.presets import PRESETS

REPOSITORY = Path(__file__).resolve().parents[1] / "models"
SHIPPED = ["digits", "digits-binary"]
LOG_2PI = math.log(2 * math.pi)


def numpy_importance_log_weights(folder, manifest, x, k, rng):
    """(N, k) float64 log p(x, z) - log q(z|x), z ~ q(z|x), with the graphs run by ONNX Runtime."""
    options = ["CPUExecutionProvider"]
    encoder = ort.InferenceSession(str(folder / manifest.encoder), providers=options)
    decoder = ort.InferenceSession(str(folder / manifest.decoder), providers=options)
    mu, logvar = (a.astype(np.float64) for a in encoder.run(["mu", "logvar"], {"x": x.astype(np.float32)}))
    eps = rng.standard_normal((len(x), k, manifest.latent_dim))  # (N, k, L)
    z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps  # (N, k, L)
    flat_x = x.reshape(len(x), 1, -1).astype(np.float64)  # (N, 1, D)
    outputs = decoder.run(None, {"z": z.reshape(-1, manifest.latent_dim).astype(np.float32)})
    params = [o.reshape(len(x), k, -1).astype(np.float64) for o in outputs]  # each (N, k, D)
    if manifest.likelihood.type == "bernoulli":
        (logits,) = params
        log_px_z = (flat_x * logits - np.logaddexp(0.0, logits)).sum(-1)
    else:
        mean, out_logvar = params
        log_px_z = -0.5 * (LOG_2PI + out_logvar + (flat_x - mean) ** 2 * np.exp(-out_logvar)).sum(-1)
    log_prior = -0.5 * (LOG_2PI + z**2).sum(-1)
    log_q = -0.5 * (LOG_2PI + logvar[:, None] + eps**2).sum(-1)
    return log_px_z + log_prior - log_q


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_keeps_the_contract(name):
    folder = REPOSITORY / name / "1"
    manifest = load_manifest(folder)
    check_graphs(manifest, folder)
    assert manifest.sha256 == {f: sha256_of(folder / f) for f in (manifest.encoder, manifest.decoder)}
    assert manifest.export["parity_max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_beats_its_target_and_every_baseline(name):
    manifest = load_manifest(REPOSITORY / name / "1")
    metrics = manifest.metrics
    assert metrics["k"] == 5000 and metrics["n_test"] == 450
    assert metrics["test_loglik"] >= PRESETS[name].target_loglik
    assert len(manifest.baselines) >= 2
    assert all(metrics["test_loglik"] > b["test_loglik"] for b in manifest.baselines)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_reproduce_the_claimed_figures(name):
    folder = REPOSITORY / name / "1"
    manifest = load_manifest(folder)
    test = load_dataset(DataConfig(name), manifest.likelihood.type).test
    log_w = numpy_importance_log_weights(folder, manifest, test, k=500, rng=np.random.default_rng(0))
    elbo = log_w.mean()
    loglik = (logsumexp(log_w, axis=1) - math.log(500)).mean()
    # The ELBO is unbiased for any k; 225,000 log-weights pin it to a few hundredths of a nat.
    assert abs(elbo - manifest.metrics["test_elbo"]) < 0.1
    # log p(x) with k = 500 sits a little below the K = 5000 figure (the estimate is biased low in k).
    assert manifest.metrics["test_loglik"] - 0.5 < loglik < manifest.metrics["test_loglik"] + 0.05
