"""Training throughput as one process and data-parallel under torchrun with 1 and 2 ranks (issue 22, part 3).

    .venv/bin/python bench/ddp_throughput.py [--preset digits] [--batch-sizes 64,256] [--epochs 30] [--rounds 3]

Each row runs the real command, `python -m training train --preset P --batch-size B` (one process), or the same
under `python -m torch.distributed.run --standalone --nproc_per_node N`, with OMP_NUM_THREADS=1 per process. An
epoch's time is read from the modification times of the checkpoints rank 0 writes after every epoch, so start-up
and data loading are not in it (validation is scored only at the last epoch, which is left out; the per-epoch
validation KL stays in). Samples/s = training rows per epoch / epoch time. Median over --rounds, the
launch modes alternating within each round. Writes section "ddp_throughput_PRESET" of docs/BENCHMARKS.md.
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402

MODES = {"one process (python -m training)": None, "torchrun, 1 rank": 1, "torchrun, 2 ranks": 2}


def seconds_per_epoch(preset: str, batch: int, epochs: int, ranks: int | None, folder: Path) -> float:
    """Run the command; the time between rank 0's checkpoint writes (one after every epoch), read from the
    written files' modification times, over the epochs that come before the last (which scores validation)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [] if ranks is None else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    checkpoint = folder / f"{preset}-{batch}-{ranks}.pt"
    checkpoint.unlink(missing_ok=True)
    command = [sys.executable, *launcher, "-m", "training", "train", "--preset", preset, "--batch-size", str(batch),
               "--epochs", str(epochs), "--eval-every", str(10**6), "--checkpoint", str(checkpoint)]
    writes: dict[int, int] = {}  # epochs done -> mtime (ns) of the checkpoint that says so
    with subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as running:
        while running.poll() is None:
            _observe(checkpoint, writes)
            time.sleep(0.005)
        stderr = running.stderr.read()
    if running.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    seen = sorted(e for e in writes if e < epochs)
    if len(seen) < 2:
        raise SystemExit(f"saw checkpoints after epochs {seen} only; give more --epochs")
    return (writes[seen[-1]] - writes[seen[0]]) / 1e9 / (seen[-1] - seen[0])


def _observe(checkpoint: Path, writes: dict[int, int]) -> None:
    import torch

    try:
        with open(checkpoint, "rb") as handle:  # the file as renamed into place: its mtime and its contents
            mtime = os.fstat(handle.fileno()).st_mtime_ns
            if mtime in writes.values():
                return
            writes[torch.load(handle, map_location="cpu", weights_only=True)["epochs_done"]] = mtime
    except FileNotFoundError:
        return


def training_rows(preset: str) -> int:
    from training.data import load_dataset
    from training.presets import PRESETS

    recipe = PRESETS[preset]
    dataset = load_dataset(recipe.data, recipe.model.likelihood)
    return len(dataset.split_validation(recipe.train.val_fraction)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--batch-sizes", default="64,256", help="global batch sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = training_rows(args.preset)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    epoch_seconds: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for batch in batches:
                for mode, ranks in MODES.items():
                    seconds = seconds_per_epoch(args.preset, batch, args.epochs, ranks, Path(scratch))
                    epoch_seconds.setdefault((batch, mode), []).append(seconds)
                    print(f"round {round_ + 1} batch {batch} {mode}: {epoch_seconds[batch, mode][-1]:.3f} s/epoch",
                          file=sys.stderr)
    table = ["| global batch | launch | s per epoch (median) | samples/s | each round, s per epoch | vs one process |",
             "|---|---|---|---|---|---|"]
    for batch in batches:
        alone = statistics.median(epoch_seconds[batch, next(iter(MODES))])
        for mode in MODES:
            times = epoch_seconds[batch, mode]
            median = statistics.median(times)
            table.append(f"| {batch} | {mode} | {median:.3f} | {rows / median:.0f} | "
                         f"{', '.join(f'{t:.3f}' for t in times)} | {alone / median:.2f}x |")
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    section = "\n".join([
        f"## Data-parallel training, {args.preset}: 1 and 2 processes (issue 22)",
        "",
        f"`python bench/ddp_throughput.py --preset {args.preset} --batch-sizes {args.batch_sizes} --epochs "
        f"{args.epochs} --rounds {args.rounds}` on {datetime.date.today()}: {machine}; the `{args.preset}` recipe "
        f"({rows} training rows per epoch), OMP_NUM_THREADS=1 in every process, gloo on the CPU. s per epoch: the "
        "time between rank 0's checkpoint writes (one per epoch: the steps, the all-reduce of the loss, the "
        "validation KL, the write), before the last epoch; start-up is not in it. **Noisy**: this machine's 2 "
        "cores are shared with other jobs, so the two ranks compete with them for the cores.",
        "",
        *table,
        "",
        "The batch is global (the ranks share each batch; training/distributed.py), so a step of two ranks is the "
        "step of one process on half the rows each, plus an all-reduce of every gradient (gloo over loopback) and "
        "the wait for the slower rank; torchrun with one rank is that path without a partner. Two ranks can be "
        "at most twice as fast only with two idle cores, which this machine rarely has; on a small model the "
        "all-reduce per step costs about what the step does, and larger batches (fewer steps) lose less.",
    ])
    print(section)
    replace_section(f"ddp_throughput_{args.preset}", section)


if __name__ == "__main__":
    main()
