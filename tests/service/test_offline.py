"""`python -m service reference` and `python -m service score`, run as a user runs them: their numbers are
/loglik's and /score's, bad data is refused with the row named, and an interrupted score continues."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.service.handmade import LinearGaussian, OneDimensionalBernoulli
from tests.service.scoring_helpers import write_reference

ROOT = Path(__file__).resolve().parents[2]


def service(*args: str, repository: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", *args, "--repository", str(repository)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_reference_scores_are_the_services_loglik_and_score_uses_them(tmp_path, make_client):
    LinearGaussian(proposal_widen=1.5).write(tmp_path)
    points = np.random.default_rng(0).normal(size=(150, 5)).astype(np.float32)
    np.save(tmp_path / "held-out.npy", points)
    done = service("reference", "linear", "--data", str(tmp_path / "held-out.npy"), "--k", "64", "--seed", "4",
                   repository=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "150 points" in done.stdout
    reference = json.loads((tmp_path / "linear" / "1" / "reference.json").read_text())
    assert reference["format"] == "vae-reference/1" and reference["score"] == "loglik"
    assert (reference["k"], reference["seed"], len(reference["scores"])) == (64, 4, 150)
    client = make_client(tmp_path)
    answer = client.post("/loglik", json={"model": "linear", "x": points.tolist(), "k": 64, "seed": 4}).json()
    assert reference["scores"] == answer["loglik"]  # the same code path: the same numbers
    scored = client.post("/score", json={"model": "linear", "x": points[:3].tolist(), "fpr": 0.5}).json()
    assert scored["reference"]["n"] == 150 and scored["score"] == answer["loglik"][:3]


def test_a_likelihood_ratio_reference_from_the_command_line(tmp_path, make_client):
    LinearGaussian().write(tmp_path, "linear", 1)
    LinearGaussian(seed=3).write(tmp_path, "wide", 1)
    points = np.random.default_rng(1).normal(size=(40, 5))
    np.savetxt(tmp_path / "held-out.csv", points, delimiter=",", header="a,b,c,d,e")
    done = service("reference", "linear:1", "--data", str(tmp_path / "held-out.csv"), "--k", "32",
                   "--background", "wide:1", repository=tmp_path)
    assert done.returncode == 0, done.stderr
    reference = json.loads((tmp_path / "linear" / "1" / "reference.json").read_text())
    assert reference["score"] == "likelihood_ratio" and reference["background"] == "wide:1"
    client = make_client(tmp_path)
    body = {"x": points.astype(np.float32).tolist(), "k": 32, "seed": 0}
    own = np.array(client.post("/loglik", json={"model": "linear", **body}).json()["loglik"])
    other = np.array(client.post("/loglik", json={"model": "wide", **body}).json()["loglik"])
    np.testing.assert_array_equal(reference["scores"], own - other)


@pytest.mark.parametrize("case", ["nan", "shape", "range", "empty", "type"])
def test_bad_data_is_refused_with_the_row_and_nothing_is_written(tmp_path, case):
    OneDimensionalBernoulli().write(tmp_path)
    good = (np.random.default_rng(2).random((8, 6)) < 0.5).astype(np.float32)
    path = tmp_path / "points.npy"
    if case == "nan":
        good[5, 2] = np.nan
    elif case == "range":
        good[3, 0] = 2.0
    elif case == "shape":
        good = good[:, :5]
    elif case == "empty":
        good = good[:0]
    elif case == "type":
        path = tmp_path / "points.txt"
        path.write_text("1,0")
    if case != "type":
        np.save(path, good)
    done = service("reference", "bern1d", "--data", str(path), repository=tmp_path)
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error:")
    expected = {"nan": "row 6: holds NaN", "range": "row 4: this model has a Bernoulli likelihood",
                "shape": "each point has shape [5]", "empty": "is empty", "type": "unsupported file type"}[case]
    assert expected in message
    assert not (tmp_path / "bern1d" / "1" / "reference.json").exists()


def test_score_streams_a_file_resumes_after_a_kill_and_agrees_with_post_score(tmp_path, make_client):
    folder = LinearGaussian(proposal_widen=1.5).write(tmp_path)
    write_reference(folder, np.linspace(-14, -4, 199), k=3000, seed=1)
    points = np.random.default_rng(5).normal(size=(4500, 5)).astype(np.float32)
    np.save(tmp_path / "all.npy", points)
    out = tmp_path / "scores.npz"
    command = [sys.executable, "-m", "service", "score", "linear", "--data", str(tmp_path / "all.npy"),
               "--out", str(out), "--fpr", "0.05", "--repository", str(tmp_path)]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "scores.npz.parts"
    deadline = time.monotonic() + 120
    while not list(parts.glob("part-*.npz")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)  # an interruption the process gets no chance to clean up after
    first.wait()
    finished = len(list(parts.glob("part-*.npz")))
    assert 1 <= finished < 5 and not out.exists()
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resumed from point {finished * 1024}" in again.stdout and not parts.exists()
    result = np.load(out)
    assert result["score"].shape == (4500,) and str(result["model"]) == "linear:1"
    client = make_client(tmp_path, max_batch=4500)
    rows = [0, 1023, 1024, 2500, 4499]  # across the chunk boundaries, before and after the kill
    posted = client.post("/score", json={"model": "linear", "x": points[rows].tolist(), "fpr": 0.05}).json()
    for name in ("loglik", "score", "p_value", "is_outlier", "stderr"):
        np.testing.assert_array_equal(result[name][rows], posted[name], err_msg=name)
    assert float(result["threshold"]) == posted["threshold"]
    # The parts of a run are never mixed with another's: a different model version is refused
    parts.mkdir()
    (parts / "run.json").write_text(json.dumps({"model": "linear:1", "digest": "another"}))
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "parts of another run" in refused.stderr


def test_score_without_a_reference_says_how_to_make_one(tmp_path):
    LinearGaussian().write(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((3, 5), np.float32))
    done = service("score", "linear", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o.npz"),
                   repository=tmp_path)
    assert done.returncode == 2 and "python -m service reference" in done.stderr
