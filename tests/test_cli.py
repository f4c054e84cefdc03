"""The command line end to end on tiny settings: train, evaluate, baselines, export, report; and its errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from modelrepo import check_graphs, load_manifest


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_train_evaluate_export_on_a_user_file(tmp_path):
    rows = (np.random.default_rng(0).uniform(size=(60, 1, 3, 3)) > 0.5).astype(np.float32)
    np.save(tmp_path / "bits.npy", rows)
    tiny = ["--likelihood", "bernoulli", "--latent-dim", "2", "--hidden", "8", "--epochs", "3",
            "--eval-every", "1", "--batch-size", "16"]
    trained = cli("train", "--dataset", "bits.npy", *tiny, "--checkpoint", "run.pt", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "best validation log-likelihood" in trained.stdout
    evaluated = cli("evaluate", "--checkpoint", "run.pt", "--k", "50", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "run.pt.metrics.json").read_text())
    assert metrics["k"] == 50 and metrics["n_test"] == 15 and len(metrics["kl_per_dim"]) == 2
    # A probability mass over 9 bits: log p(x) is at most 0 and at least 9 log(1/2) for any sensible model.
    assert -9 * np.log(2) - 3 < metrics["test_loglik"] < 0
    assert metrics["test_elbo"] <= metrics["test_loglik"] + 1e-6
    exported = cli("export", "--checkpoint", "run.pt", "--repository", "repo", "--name", "bits", cwd=tmp_path)

    assert exported.returncode == 0, exported.stderr
    folder = tmp_path / "repo" / "bits" / "1"
    manifest = load_manifest(folder)
    check_graphs(manifest, folder)
    assert manifest.data_shape == [1, 3, 3] and manifest.metrics["test_loglik"] == metrics["test_loglik"]
    assert manifest.training["train_config"]["epochs"] == 3
    assert manifest.dataset["source"] == "bits.npy"


def test_build_then_report(tmp_path):
    built = cli("build", "--preset", "digits-binary", "--epochs", "2", "--eval-every", "1", "--hidden", "16",
                "--latent-dim", "2", "--k", "20", "--repository", "repo", "--checkpoint", "run.pt", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    manifest = load_manifest(tmp_path / "repo" / "digits-binary" / "1")
    assert {b["name"] for b in manifest.baselines} == {"Independent Bernoullis", "Mixture of Bernoullis (EM)"}
    assert manifest.image.model_dump() == {"height": 8, "width": 8, "channels": 1, "range": (0.0, 1.0)}
    (tmp_path / "README.md").write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n")
    reported = cli("report", "--repository", "repo", "--output", "RESULTS.md", "--readme", "README.md", cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    readme = (tmp_path / "README.md").read_text()
    assert "old" not in readme and "| digits-binary:1 | bernoulli | 2 |" in readme and readme.endswith("rest\n")
    assert "Mixture of Bernoullis (EM)" in (tmp_path / "RESULTS.md").read_text()


def test_build_without_baselines(tmp_path):
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32))
    built = cli("build", "--dataset", "rows.npy", "--likelihood", "gaussian", "--latent-dim", "1", "--hidden", "4",
                "--epochs", "1", "--k", "10", "--no-baselines", "--repository", "repo", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    manifest = load_manifest(tmp_path / "repo" / "rows" / "1")
    assert "baselines" not in manifest.model_dump() and manifest.metrics["k"] == 10
    assert manifest.image is None and manifest.image_layout is None  # rows of 3 numbers are not a picture


def test_a_user_file_of_images_gets_its_image_entry(tmp_path):
    rows = np.random.default_rng(0).uniform(-1, 1, size=(40, 12)).astype(np.float32)  # 3 x 4 pictures, flattened
    np.save(tmp_path / "pictures.npy", rows)
    built = cli("build", "--dataset", "pictures.npy", "--image-shape", "3,4", "--image-range=-1,1", "--likelihood",
                "gaussian", "--latent-dim", "1", "--hidden", "4", "--epochs", "1", "--k", "10", "--no-baselines",
                "--repository", "repo", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    manifest = load_manifest(tmp_path / "repo" / "pictures" / "1")
    assert manifest.data_shape == [12]
    assert manifest.image.model_dump() == {"height": 3, "width": 4, "channels": 1, "range": (-1.0, 1.0)}


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--dataset", "missing.npy"], "missing.npy: no such file"),
        (["train"], "name the data with --dataset"),
        (["train", "--preset", "digits", "--likelihood", "bernoulli"], "Bernoulli likelihood needs"),
        (["train", "--preset", "digits", "--objective", "iwae", "--free-bits", "1"], "free_bits applies"),
        (["evaluate", "--checkpoint", "nothing.pt"], "no such checkpoint"),
        (["train", "--dataset", "digits", "--hidden", "a,b"], "comma-separated integers"),
        (["train", "--preset", "digits", "--device", "tpu"], "--device 'tpu'"),
        (["train", "--preset", "digits", "--device", "cuda"], "sees no CUDA GPU; use --device cpu"),
        (["train", "--preset", "digits", "--image-shape", "5,5"], "image shape [5, 5] is 25 values"),
        (["train", "--preset", "digits", "--image-shape", "4,8,2"], "H,W or H,W,C with C 1 or 3"),
        (["train", "--preset", "digits", "--image-shape", "8,8", "--image-range", "1,0"], "LO < HI"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, args, message):
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
