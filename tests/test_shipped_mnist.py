"""The shipped mnist-binary model: its manifest keeps the contract and claims the target, and its files alone
reproduce the claimed figures on the 10,000 binarised test images (float64 NumPy math of modelrepo, the
graphs run by ONNX Runtime, independent of training/)."""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo import check_graphs, load_manifest, sha256_of
from modelrepo.likelihood import importance_sampled_loglik, likelihood_for, prior_for
from training.config import DataConfig
from training.data import load_dataset
from training.presets import PRESETS

FOLDER = Path(__file__).resolve().parents[1] / "models" / "mnist-binary" / "1"


def test_shipped_mnist_model_keeps_the_contract_and_claims_its_target():
    manifest = load_manifest(FOLDER)
    check_graphs(manifest, FOLDER)
    assert manifest.sha256 == {f: sha256_of(FOLDER / f) for f in (manifest.encoder, manifest.decoder)}
    assert manifest.data_shape == [28, 28] and manifest.likelihood.type == "bernoulli"
    metrics = manifest.metrics
    assert metrics["k"] == 5000 and metrics["n_test"] == 10000 and metrics["dataset"] == "mnist-binary"
    assert metrics["test_loglik"] >= PRESETS["mnist-binary"].target_loglik


def test_shipped_mnist_files_reproduce_the_claimed_figures():
    manifest = load_manifest(FOLDER)
    encoder, decoder = (ort.InferenceSession(str(FOLDER / f), providers=["CPUExecutionProvider"])
                        for f in (manifest.encoder, manifest.decoder))
    names = [o.name for o in decoder.get_outputs()]
    encode = lambda x: tuple(encoder.run(None, {"x": x.astype(np.float32)}))
    decode = lambda z: dict(zip(names, decoder.run(None, {"z": z.astype(np.float32)})))
    x = load_dataset(DataConfig("mnist-binary"), "bernoulli").test  # (10000, 28, 28)
    k = 50
    eps = np.random.default_rng(0).standard_normal((k, manifest.latent_dim))
    estimate = importance_sampled_loglik(encode, decode, likelihood_for("bernoulli"),
                                         prior_for(manifest.prior, manifest.latent_shape), x, eps, 1 << 23)
    # The ELBO is unbiased for any k: 500,000 log-weights pin its mean to a few hundredths of a nat.
    assert abs(estimate.elbo.mean() - manifest.metrics["test_elbo"]) < 0.1
    # log p(x) with k = 50 sits below the K = 5000 figure (the estimate is biased low in k), by about a nat.
    assert manifest.metrics["test_loglik"] - 2.5 < estimate.loglik.mean() < manifest.metrics["test_loglik"] + 0.05
