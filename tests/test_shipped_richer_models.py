"""The shipped richer models (digits-mog, digits-binary-discrete): their manifests and graphs keep the
contract's "Richer models", and their files alone reproduce the figures the manifests claim, recomputed on
the ONNX graphs in float64 with modelrepo's NumPy math (the service's), independent of training/.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelrepo import check_graphs, load_manifest, sha256_of
from modelrepo.categorical import enumerated_loglik
from modelrepo.likelihood import importance_sampled_loglik, likelihood_for, prior_for
from training.config import DataConfig
from training.data import load_dataset
from training.presets import PRESETS

REPOSITORY = Path(__file__).resolve().parents[1] / "models"
SHIPPED = ["digits-mog", "digits-binary-discrete"]
WORK_ELEMENTS = 1 << 22


def _graphs(manifest):
    """encode(x) -> outputs and decode(z) -> {name: output}, run by ONNX Runtime on the shipped files."""
    folder = REPOSITORY / manifest.name / "1"
    encoder, decoder = (ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"])
                        for f in (manifest.encoder, manifest.decoder))
    names = [o.name for o in decoder.get_outputs()]
    encode = lambda x: tuple(encoder.run(None, {"x": x.astype(np.float32)}))
    decode = lambda z: dict(zip(names, decoder.run(None, {"z": z.astype(np.float32)})))
    return encode, decode


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_richer_model_keeps_the_contract_and_beats_its_target(name):
    folder = REPOSITORY / name / "1"
    manifest = load_manifest(folder)
    check_graphs(manifest, folder)  # logits [batch, G, C] and z [batch, G, C] for categorical latents
    assert manifest.sha256 == {f: sha256_of(folder / f) for f in (manifest.encoder, manifest.decoder)}
    assert manifest.export["parity_max_abs_diff"] <= 1e-4
    if name == "digits-mog":
        assert manifest.prior.type == "mixture_of_gaussians" and len(manifest.prior.logits) == 50
    else:
        assert manifest.latent.type == "categorical" and manifest.prior.type == "uniform_categorical"
        assert manifest.latent.configurations <= 4096  # the service's default enumeration limit
    metrics = manifest.metrics
    assert metrics["n_test"] == 450 and metrics["k"] == (5000 if name == "digits-mog" else 4096)
    assert metrics["test_loglik"] >= PRESETS[name].target_loglik
    assert len(manifest.baselines) >= 2
    assert all(metrics["test_loglik"] > b["test_loglik"] for b in manifest.baselines)


def test_mixture_model_files_reproduce_the_claimed_figures():
    manifest = load_manifest(REPOSITORY / "digits-mog" / "1")
    x = load_dataset(DataConfig("digits"), "gaussian").test
    eps = np.random.default_rng(0).standard_normal((500, manifest.latent_dim))
    estimate = importance_sampled_loglik(*_graphs(manifest), likelihood_for("gaussian"),
                                         prior_for(manifest.prior, manifest.latent_shape), x, eps, WORK_ELEMENTS)
    # The ELBO is unbiased for any k; log p(x) with k = 500 sits a little below the K = 5000 figure.
    assert abs(estimate.elbo.mean() - manifest.metrics["test_elbo"]) < 0.1
    assert manifest.metrics["test_loglik"] - 0.5 < estimate.loglik.mean() < manifest.metrics["test_loglik"] + 0.05


def test_categorical_model_files_reproduce_the_exact_figures():
    manifest = load_manifest(REPOSITORY / "digits-binary-discrete" / "1")
    x = load_dataset(DataConfig("digits-binary"), "bernoulli").test
    estimate = enumerated_loglik(*_graphs(manifest), likelihood_for("bernoulli"),
                                 prior_for(manifest.prior, manifest.latent_shape), x, WORK_ELEMENTS)
    metrics = manifest.metrics
    assert metrics["method"] == "exact" and metrics["test_loglik_is_stderr"] == 0
    assert abs(estimate.loglik.mean() - metrics["test_loglik"]) < 1e-3
    assert abs(estimate.elbo.mean() - metrics["test_elbo"]) < 1e-3
