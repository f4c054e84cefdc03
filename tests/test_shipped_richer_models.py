"""The shipped richer models (digits-mog, digits-binary-discrete): their manifests carry the contract's
prior and latent entries, and their files alone reproduce the figures the manifests claim, recomputed here
in float64 NumPy (a mixture log-density and an exact sum over every configuration, independent of training/).

The manifests are read as JSON: the schema of the richer keys belongs to modelrepo (the serving side).
"""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from scipy.special import logsumexp

from modelrepo import sha256_of
from training.config import DataConfig
from training.data import load_dataset
from training.presets import PRESETS

REPOSITORY = Path(__file__).resolve().parents[1] / "models"
SHIPPED = ["digits-mog", "digits-binary-discrete"]
LOG_2PI = math.log(2 * math.pi)


def _manifest(name):
    return json.loads((REPOSITORY / name / "1" / "manifest.json").read_text())


def _sessions(name):
    folder = REPOSITORY / name / "1"
    return [ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"]) for f in ("encoder.onnx", "decoder.onnx")]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_richer_model_keeps_the_contract_and_beats_its_target(name):
    manifest, folder = _manifest(name), REPOSITORY / name / "1"
    assert manifest["format"] == "vae-onnx/1" and manifest["name"] == name and manifest["version"] == 1
    assert manifest["sha256"] == {f: sha256_of(folder / f) for f in ("encoder.onnx", "decoder.onnx")}
    assert manifest["export"]["parity_max_abs_diff"] <= 1e-4
    encoder, decoder = _sessions(name)
    if name == "digits-mog":
        prior, latent_dim = manifest["prior"], manifest["latent_dim"]
        assert prior["type"] == "mixture_of_gaussians" and "latent" not in manifest
        components = len(prior["logits"])
        assert np.shape(prior["mean"]) == np.shape(prior["logvar"]) == (components, latent_dim)
        assert [o.name for o in encoder.get_outputs()] == ["mu", "logvar"]
    else:
        latent = manifest["latent"]
        assert latent["type"] == "categorical" and manifest["prior"] == {"type": "uniform_categorical"}
        assert latent["categories"] ** latent["groups"] <= 4096  # the service's default enumeration limit
        assert manifest["latent_dim"] == latent["groups"] * latent["categories"]
        assert [(o.name, o.shape[1:]) for o in encoder.get_outputs()] == [("logits", [latent["groups"], latent["categories"]])]
        assert [(i.name, i.shape[1:]) for i in decoder.get_inputs()] == [("z", [latent["groups"], latent["categories"]])]
    metrics = manifest["metrics"]
    assert metrics["n_test"] == 450 and metrics["k"] == (5000 if name == "digits-mog" else 4096) and metrics["test_loglik"] >= PRESETS[name].target_loglik
    assert len(manifest["baselines"]) >= 2
    assert all(metrics["test_loglik"] > b["test_loglik"] for b in manifest["baselines"])


def test_mixture_model_files_reproduce_the_claimed_figures():
    manifest = _manifest("digits-mog")
    encoder, decoder = _sessions("digits-mog")
    x = load_dataset(DataConfig("digits"), "gaussian").test.astype(np.float64)  # (450, 64)
    prior, k = manifest["prior"], 500
    mu, logvar = (a.astype(np.float64) for a in encoder.run(["mu", "logvar"], {"x": x.astype(np.float32)}))
    eps = np.random.default_rng(0).standard_normal((len(x), k, manifest["latent_dim"]))  # (N, k, L)
    z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps  # (N, k, L)
    mean, out_logvar = (o.reshape(len(x), k, -1).astype(np.float64)
                        for o in decoder.run(None, {"z": z.reshape(-1, z.shape[-1]).astype(np.float32)}))
    log_px_z = -0.5 * (LOG_2PI + out_logvar + (x[:, None] - mean) ** 2 * np.exp(-out_logvar)).sum(-1)  # (N, k)
    means, logvars = np.array(prior["mean"]), np.array(prior["logvar"])  # (C, L)
    log_pi = np.array(prior["logits"]) - logsumexp(prior["logits"])  # (C,)
    per_component = -0.5 * (LOG_2PI + logvars + (z[..., None, :] - means) ** 2 * np.exp(-logvars)).sum(-1)  # (N, k, C)
    log_prior = logsumexp(log_pi + per_component, axis=-1)  # (N, k)
    log_q = -0.5 * (LOG_2PI + logvar[:, None] + eps**2).sum(-1)
    log_w = log_px_z + log_prior - log_q
    loglik = (logsumexp(log_w, axis=1) - math.log(k)).mean()
    assert abs(log_w.mean() - manifest["metrics"]["test_elbo"]) < 0.1
    assert manifest["metrics"]["test_loglik"] - 0.5 < loglik < manifest["metrics"]["test_loglik"] + 0.05


def test_categorical_model_files_reproduce_the_exact_figures():
    manifest = _manifest("digits-binary-discrete")
    encoder, decoder = _sessions("digits-binary-discrete")
    groups, categories = manifest["latent"]["groups"], manifest["latent"]["categories"]
    x = load_dataset(DataConfig("digits-binary"), "bernoulli").test.astype(np.float64)  # (450, 64)
    every = np.array(list(itertools.product(range(categories), repeat=groups)))  # (M, G)
    (logits,) = decoder.run(["logits"], {"z": np.eye(categories, dtype=np.float32)[every]})
    logits = logits.astype(np.float64)  # (M, D)
    log_px_z = x @ logits.T - np.logaddexp(0, logits).sum(-1)  # (N, M)
    log_prior = -groups * math.log(categories)
    (q_logits,) = encoder.run(["logits"], {"x": x.astype(np.float32)})
    log_q_groups = q_logits.astype(np.float64) - logsumexp(q_logits.astype(np.float64), axis=-1, keepdims=True)
    log_q = log_q_groups[:, np.arange(groups), every].sum(-1)  # (N, M)
    loglik = logsumexp(log_px_z + log_prior, axis=1)
    elbo = (np.exp(log_q) * (log_px_z + log_prior - log_q)).sum(1)
    metrics = manifest["metrics"]
    assert metrics["method"] == "exact" and metrics["test_loglik_is_stderr"] == 0
    assert abs(loglik.mean() - metrics["test_loglik"]) < 1e-3
    assert abs(elbo.mean() - metrics["test_elbo"]) < 1e-3
