"""Where this process stands in a torchrun launch, and what a data-parallel run accepts; no torch, so the command
line starts without it (training/distributed.py runs the ranks)."""

import os
from dataclasses import dataclass

from training.config import ModelConfig, TrainConfig

LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")  # what torchrun sets in each process it starts
DATA_PARALLEL_COMMANDS = ("train", "build")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; `launched` is False for a plain `python -m training`."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False

    @property
    def leader(self) -> bool:
        return self.rank == 0


ONE_PROCESS = World()


def world_from_environment() -> World:
    if not all(name in os.environ for name in LAUNCHER_VARIABLES):
        return ONE_PROCESS
    try:
        rank, local, size = (int(os.environ[name]) for name in LAUNCHER_VARIABLES)
    except ValueError:
        raise ValueError(f"{', '.join(LAUNCHER_VARIABLES)} must be integers (torchrun sets them)") from None
    return World(rank, size, local, launched=True)


def rank_prefix() -> str:
    """"rank R: " before a message of a rank other than 0, so a launch's lines say whose they are."""
    rank = os.environ.get("RANK", "0") if all(name in os.environ for name in LAUNCHER_VARIABLES) else "0"
    return "" if rank == "0" else f"rank {rank}: "


def check_data_parallel(model: ModelConfig, train: TrainConfig, world: World) -> None:
    """Raise ValueError, saying what to change, for a recipe that does not train data-parallel."""
    if not world.launched:
        return
    one_process = "; train it as one process (python -m training, no torchrun)"
    if train.aggressive:
        raise ValueError("aggressive training runs encoder steps until one process's loss stops falling, "
                         f"which ranks would not agree on{one_process}")
    if model.latent == "categorical" and train.estimator == "score_function":
        raise ValueError("the score-function estimator's moving-average baseline is one process's running state; "
                         f"use --estimator exact or gumbel_softmax{one_process}")
    if train.batch_size < world.size:
        raise ValueError(f"--batch-size {train.batch_size} is the global batch, shared by {world.size} processes; "
                         f"give at least {world.size}")
