"""Data-parallel training under torchrun: one process per rank, gradients averaged by DistributedDataParallel.

    torchrun --standalone --nproc_per_node N -m training train|build ...

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them training is the one process it always was. Under it:

- every rank draws the epoch's permutation from (seed, epoch), as one process does, and cuts each global batch of
  --batch-size rows into its share: rows rank, rank + N, rank + 2N, ... of the batch (the epoch's shard
  order[rank::N], batch_size / N rows at a time, as torch's DistributedSampler deals it);
- each rank's loss is weighted by its share of the batch's rows, so the averaged gradient is the gradient of the
  loss over the whole global batch: a step is one process's step with other noise, and the learning rate keeps
  its meaning;
- rank 0 draws its noise as one process does; rank r > 0 from a stream seeded by (seed, epoch, 2, r);
- rank 0 scores validation, writes the checkpoint and decides early stopping; the others wait for its verdict.

Objectives whose steps depend on one process's running state are refused (training.world.check_data_parallel).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from training.config import TrainConfig
from training.model import VAE
from training.objectives import training_loss
from training.world import World

RANK_STREAM = 2  # third word of the seed of a rank's own noise (training.train.PERTURBATION_STREAM is 1)


def rank_device(device: str, world: World) -> str:
    """The device this rank trains on: under torchrun, --device cuda means cuda:LOCAL_RANK."""
    if not world.launched or not device.startswith("cuda"):
        return device
    if device != "cuda":
        raise ValueError(f"--device {device}: under torchrun pass --device cuda; each process takes cuda:LOCAL_RANK")
    if world.local_rank >= torch.cuda.device_count():
        raise ValueError(f"process {world.local_rank} on this node needs cuda:{world.local_rank}, and this torch "
                         f"sees {torch.cuda.device_count()} GPU(s); start at most that many processes per node")
    return f"cuda:{world.local_rank}"


@contextmanager
def process_group(world: World, device: str) -> Iterator[None]:
    """The default process group of the ranks (NCCL on GPUs, gloo on the CPU) while the block runs."""
    if not world.launched:
        yield
        return
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


class TrainingLoss(nn.Module):
    """training_loss as a module's forward, for DistributedDataParallel to wrap (the VAE has no forward)."""

    def __init__(self, model: VAE, config: TrainConfig):
        super().__init__()
        self.model, self.config = model, config

    def forward(self, x: torch.Tensor, epoch: int, generator: torch.Generator, state: dict) -> torch.Tensor:
        if len(x) == 0:  # this rank's share of a last batch smaller than the world: no rows, zero gradient
            return sum(p.sum() for p in self.model.parameters()) * 0.0
        return training_loss(self.model, x, self.config, epoch, generator, state)


def data_parallel(model: VAE, config: TrainConfig, device: str) -> DistributedDataParallel:
    """The loss of `model`, wrapped so every backward averages the gradients over the ranks; the wrapper
    broadcasts rank 0's weights once, and the ranks' optimisers then take the same steps."""
    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(TrainingLoss(model, config), device_ids=device_ids,
                                   forward_sync_buffers=False)  # the MADE masks never change


def share(rows: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's rows of a global batch of row indices: rank, rank + N, ... (the whole batch for one rank)."""
    return rows if world.size == 1 else rows[world.rank :: world.size]


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the noise of rank > 0 at `epoch`; rank 0 draws from the epoch's own stream, as one process does."""
    return int(np.random.SeedSequence([seed, epoch, RANK_STREAM, rank]).generate_state(1)[0])


def sum_over_ranks(value: float, device: str) -> float:
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item())


def leader_decides(flag: bool, device: str) -> bool:
    """Rank 0's `flag` on every rank (early stopping); the others wait here until rank 0 has checkpointed."""
    verdict = torch.tensor([int(flag)], device=device)
    dist.broadcast(verdict, src=0)
    return bool(verdict.item())
