"""Export: ONNX Runtime agrees with PyTorch, graphs and manifest keep the contract, writes are atomic."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import training.export as export
from modelrepo import check_graphs, load_manifest, sha256_of
from training.config import ModelConfig
from training.model import VAE


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("likelihood, variance", [("bernoulli", "conditional"), ("gaussian", "conditional"),
                                                  ("gaussian", "per_output")])
def test_exported_graphs_match_pytorch_at_every_batch_size(tmp_path, likelihood, variance):
    torch.manual_seed(0)
    vae = VAE(ModelConfig(data_shape=(1, 3, 4), latent_dim=5, hidden=(16, 8), likelihood=likelihood,
                          gaussian_variance=variance)).eval()
    folder = export.export_model(vae, tmp_path, "tiny", 2, {"description": "test"})
    assert folder == tmp_path / "tiny" / "2"
    manifest = load_manifest(folder)
    check_graphs(manifest, folder)
    assert manifest.data_shape == [1, 3, 4] and manifest.latent_dim == 5 and manifest.likelihood.type == likelihood
    assert manifest.description == "test"
    assert manifest.sha256 == {f: sha256_of(folder / f) for f in ("encoder.onnx", "decoder.onnx")}
    encoder, decoder = _session(folder / "encoder.onnx"), _session(folder / "decoder.onnx")
    rng = np.random.default_rng(1)
    for batch in (1, 2, 33):
        x = rng.uniform(size=(batch, 1, 3, 4)).astype(np.float32)
        mu, logvar = encoder.run(["mu", "logvar"], {"x": x})
        with torch.no_grad():
            want_mu, want_logvar = vae.encode(torch.from_numpy(x).flatten(1))
        np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-5)
        np.testing.assert_allclose(logvar, want_logvar.numpy(), atol=1e-5)
        z = rng.standard_normal((batch, 5)).astype(np.float32)
        names = ["logits"] if likelihood == "bernoulli" else ["mean", "logvar"]
        outputs = decoder.run(names, {"z": z})
        with torch.no_grad():
            wanted = vae.decode(torch.from_numpy(z))
        for got, want in zip(outputs, wanted):
            assert got.shape == (batch, 1, 3, 4)
            np.testing.assert_allclose(got, want.reshape(batch, 1, 3, 4).numpy(), atol=1e-5)


def test_failed_parity_writes_nothing(tmp_path, tiny_vae, monkeypatch):
    # Fault injection: ONNX Runtime and PyTorch agree on a healthy export, so make them disagree.
    real = export.run_onnx
    monkeypatch.setattr(export, "run_onnx", lambda *a: [o + 1e-3 for o in real(*a)])
    with pytest.raises(export.ExportError, match="differs from PyTorch"):
        export.export_model(tiny_vae, tmp_path, "tiny", 1)
    assert list((tmp_path / "tiny").iterdir()) == []  # no version folder, no leftovers


def test_existing_version_is_kept_unless_forced(tmp_path, tiny_vae):
    export.export_model(tiny_vae, tmp_path, "tiny", 1, {"description": "first"})
    with pytest.raises(export.ExportError, match="exists"):
        export.export_model(tiny_vae, tmp_path, "tiny", 1)
    export.export_model(tiny_vae, tmp_path, "tiny", 1, {"description": "second"}, force=True)
    assert json.loads((tmp_path / "tiny" / "1" / "manifest.json").read_text())["description"] == "second"
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1"]


@pytest.mark.parametrize("name, version, message", [("Bad Name", 1, "must match"), ("ok", 0, "positive")])
def test_bad_names_and_versions(tmp_path, tiny_vae, name, version, message):
    with pytest.raises(export.ExportError, match=message):
        export.export_model(tiny_vae, tmp_path, name, version)
