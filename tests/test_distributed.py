"""Data-parallel training: two CPU processes under torchrun (gloo) on the digits, against one process.

Each launch starts real processes (`python -m torch.distributed.run --standalone`), a few seconds each."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modelrepo import check_graphs, load_manifest
from service.engine.options import EngineOptions
from service.engine.repository import ModelRepository
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import load_dataset
from training.distributed import rank_device
from training.world import ONE_PROCESS, World, check_data_parallel
from training.train import train

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ["--dataset", "digits", "--likelihood", "gaussian", "--latent-dim", "4", "--hidden", "32",
          "--batch-size", "64", "--warmup-epochs", "2", "--eval-every", "2"]
EPOCHS = 8
DATA = DataConfig("digits")
MODEL = ModelConfig(data_shape=(64,), latent_dim=4, hidden=(32,), likelihood="gaussian")
RECIPE = TrainConfig(epochs=EPOCHS, batch_size=64, warmup_epochs=2, eval_every=2)  # what DIGITS gives
SEEDS = (0, 1, 2, 3)


def launch(*args: str, cwd: Path, processes: int | None = 2) -> subprocess.CompletedProcess:
    """`python -m training ARGS` under torchrun with `processes` ranks, or plainly (None); one thread each, the
    worktree's packages first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(name, None)
    launcher = [] if processes is None else ["-m", "torch.distributed.run", "--standalone",
                                             "--nproc_per_node", str(processes)]
    return subprocess.run([sys.executable, *launcher, "-m", "training", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def two_process_build(tmp_path_factory):
    """`build` with two ranks: train, evaluate (K = 1000), export with its reference."""
    folder = tmp_path_factory.mktemp("ddp")
    built = launch("build", *DIGITS, "--epochs", str(EPOCHS), "--k", "1000", "--no-baselines",
                   "--repository", "repo", "--name", "digits", "--checkpoint", "run.pt", cwd=folder)
    assert built.returncode == 0, built.stderr[-3000:]
    return folder, built


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_score_as_one_does_within_the_spread_of_seeds(two_process_build, tmp_path):
    folder, built = two_process_build
    assert built.stdout.count("exported") == 1  # rank 0 alone evaluates and exports
    two = load_checkpoint(folder / "run.pt")
    assert two.finished and two.epochs_done == EPOCHS and [r["epoch"] for r in two.history] == list(range(1, 9))
    digits = load_dataset(DATA, "gaussian")
    torch.set_num_threads(1)
    one = {seed: train(digits, DATA, MODEL, TrainConfig(**{**RECIPE.to_dict(), "seed": seed}),
                       tmp_path / f"seed{seed}.pt", progress=False) for seed in SEEDS}
    assert two.train_config == one[0].train_config and two.model_config == one[0].model_config
    scores = [one[seed].best_score for seed in SEEDS]
    spread = max(scores) - min(scores)
    assert 0 < spread < 5
    assert abs(two.best_score - one[0].best_score) <= spread, (two.best_score, scores)
    # The same checkpoint format: the same entries, read by the same loader.
    ours = torch.load(folder / "run.pt", weights_only=True)
    theirs = torch.load(tmp_path / "seed0.pt", weights_only=True)
    assert ours.keys() == theirs.keys() and ours["format"] == theirs["format"]
    assert ours["model_state"].keys() == theirs["model_state"].keys()
    assert ours["optimizer_state"]["param_groups"] == theirs["optimizer_state"]["param_groups"]
    assert sorted(os.listdir(folder)) == ["repo", "run.pt", "run.pt.metrics.json"]  # no other rank wrote


def test_the_export_of_two_processes_serves(two_process_build):
    folder, _ = two_process_build
    version = folder / "repo" / "digits" / "1"
    manifest = load_manifest(version)
    check_graphs(manifest, version)
    assert manifest.training["epochs_done"] == EPOCHS and (version / "reference.json").exists()
    repository = ModelRepository.load(folder / "repo", EngineOptions(providers=["CPUExecutionProvider"]))
    engine = repository.resolve("digits:1", "digits")
    assert repository.scoring_problem(engine) is None  # its reference is usable: /score works
    test = load_dataset(DATA, "gaussian").test.reshape(-1, 64)
    served = engine.loglik(test, 1000, 0)["loglik"]
    # The service's log p(x) of the test rows is what PyTorch's evaluation found, up to the noise of K = 1000.
    assert abs(float(np.mean(served)) - manifest.metrics["test_loglik"]) < 0.2


def test_a_resumed_two_process_run_ends_where_an_uninterrupted_one_ends(two_process_build, tmp_path):
    folder, _ = two_process_build
    half = launch("train", *DIGITS, "--epochs", str(EPOCHS // 2), "--checkpoint", "run.pt", cwd=tmp_path)
    assert half.returncode == 0, half.stderr[-3000:]
    stopped = load_checkpoint(tmp_path / "run.pt")  # as if stopped after half the epochs of the full schedule
    stopped.train_config, stopped.finished = RECIPE, False
    save_checkpoint(stopped, tmp_path / "run.pt")
    resumed = launch("train", *DIGITS, "--epochs", str(EPOCHS), "--checkpoint", "run.pt", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole, ended = load_checkpoint(folder / "run.pt"), load_checkpoint(tmp_path / "run.pt")
    assert _states_equal(ended.model_state, whole.model_state) and _states_equal(ended.best_state, whole.best_state)
    assert ended.history == whole.history


def test_the_averaged_gradient_is_the_gradient_of_the_whole_batch(tmp_path):
    """Categorical latents with the exact estimator draw no noise, so two ranks must follow one process's
    path up to rounding; batches of 7 split 4 + 3, and the last batch (1 row) leaves rank 1 none."""
    args = ["--dataset", "digits-binary", "--likelihood", "bernoulli", "--latent", "categorical", "--groups", "2",
            "--categories", "4", "--hidden", "16", "--epochs", "2", "--batch-size", "7", "--eval-every", "1"]
    result = launch("train", *args, "--checkpoint", "run.pt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    two = load_checkpoint(tmp_path / "run.pt")
    assert (1212 % 7, two.train_config.batch_size) == (1, 7)
    one = train(load_dataset(two.data_config, "bernoulli"), two.data_config, two.model_config, two.train_config,
                tmp_path / "one.pt", progress=False)
    for name, weights in one.model_state.items():
        assert torch.allclose(two.model_state[name], weights, atol=1e-4), name
    assert np.allclose([r["train_loss"] for r in two.history], [r["train_loss"] for r in one.history], rtol=1e-6)


def test_one_rank_under_torchrun_is_the_one_process_run_bit_for_bit(tmp_path):
    recipe = TrainConfig(**{**RECIPE.to_dict(), "epochs": 3, "batch_size": 100})
    assert launch("train", *DIGITS, "--epochs", "3", "--batch-size", "100", "--checkpoint", "run.pt", cwd=tmp_path,
                  processes=1).returncode == 0
    rank = load_checkpoint(tmp_path / "run.pt")
    assert rank.train_config == recipe
    torch.set_num_threads(1)  # as the launched process has it: the same kernels, the same rounding
    plain = train(load_dataset(DATA, "gaussian"), DATA, MODEL, recipe, tmp_path / "plain.pt", progress=False)
    assert _states_equal(plain.model_state, rank.model_state) and plain.history == rank.history


@pytest.fixture
def rank_1_of_2(monkeypatch):
    """This process as torchrun's second rank of two: the variables it sets, nothing started."""
    for name, value in (("RANK", "1"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("args, message", [
    ([*DIGITS, "--aggressive", "yes"], "aggressive training runs encoder steps until one process's loss stops "
                                       "falling, which ranks would not agree on; train it as one process "
                                       "(python -m training, no torchrun)"),
    ([*DIGITS, "--batch-size", "1"], "--batch-size 1 is the global batch, shared by 2 processes; give at least 2"),
])
def test_what_does_not_train_data_parallel_is_refused_in_one_line(rank_1_of_2, tmp_path, capsys, args, message):
    from training.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["train", *args, "--checkpoint", str(tmp_path / "run.pt")])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"rank 1: error: {message}\n"
    assert not (tmp_path / "run.pt").exists()


def test_each_rank_takes_its_own_gpu():
    world = World(rank=1, size=2, local_rank=1, launched=True)
    assert rank_device("cpu", world) == "cpu" and rank_device("cuda:1", ONE_PROCESS) == "cuda:1"
    with pytest.raises(ValueError, match="under torchrun pass --device cuda; each process takes cuda:LOCAL_RANK"):
        rank_device("cuda:1", world)
    with pytest.raises(ValueError, match="process 64 on this node needs cuda:64"):
        rank_device("cuda", World(rank=64, size=65, local_rank=64, launched=True))


def test_only_train_and_build_run_under_torchrun(rank_1_of_2, tmp_path, capsys):
    from training.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--checkpoint", str(tmp_path / "run.pt")])
    assert stopped.value.code == 2
    assert "rank 1: error: only train and build run under torchrun; run evaluate as one process" in capsys.readouterr().err


def test_the_estimators_that_keep_no_running_state_are_accepted():
    world = World(rank=0, size=2, local_rank=0, launched=True)
    categorical = ModelConfig(data_shape=(64,), latent="categorical", groups=2, categories=4)
    with pytest.raises(ValueError, match="score-function estimator's moving-average baseline"):
        check_data_parallel(categorical, TrainConfig(estimator="score_function"), world)
    check_data_parallel(categorical, TrainConfig(estimator="gumbel_softmax"), world)
    check_data_parallel(categorical, TrainConfig(estimator="exact"), world)
    check_data_parallel(MODEL, TrainConfig(objective="iwae", iw_samples=4, free_bits=0.0), world)
