"""The training loop: mini-batch optimisation, validation scoring, best-checkpoint selection, resume.

Every epoch draws its shuffling, dequantisation and reparameterisation noise from generators seeded by
(seed, epoch), so a run resumed from a checkpoint ends exactly where an uninterrupted run ends. Under torchrun
the ranks share each batch (training/distributed.py); one process is the special case of one rank.
"""

import copy
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from training.aggressive import (
    drop_gradients,
    encoder_and_rest,
    random_batch,
    stays_aggressive,
    update_encoder_until_converged,
)
from training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import Dataset, perturb
from training.distributed import data_parallel, leader_decides, process_group, rank_seed, share, sum_over_ranks
from training.evaluate import kl_and_posterior_mean
from training.estimators import enumerates, exact_loglik, importance_sampled_loglik
from training.information import mutual_information
from training.model import VAE
from training.objectives import check_compatible, training_loss
from training.world import ONE_PROCESS, World, check_data_parallel


PERTURBATION_STREAM = 1  # third word of the seed of an epoch's perturbation draws


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@torch.no_grad()
def validation_kl(model: VAE, x_val: torch.Tensor, rows: int = 1000) -> float:
    """KL(q(z|x) || p(z)) in nats, averaged over the first `rows` validation points: shown while training,
    so a collapsing posterior (KL near 0) is seen as it happens."""
    model.eval()
    kl_per_unit, _ = kl_and_posterior_mean(model, x_val[:rows], torch.Generator().manual_seed(0))
    model.train()
    return float(kl_per_unit.sum())


def validation_score(model: VAE, x_val: torch.Tensor, samples: int) -> float:
    """Mean log-likelihood on the validation rows: exact where it is a small sum, else importance-sampled
    with fixed noise."""
    model.eval()
    if enumerates(model):
        estimate = exact_loglik(model, x_val)
    else:
        estimate = importance_sampled_loglik(model, x_val, samples, torch.Generator().manual_seed(0))
    model.train()
    return float(estimate.loglik.mean())


@torch.no_grad()
def validation_mutual_information(model: VAE, x_val: torch.Tensor) -> float:
    model.eval()
    mi = mutual_information(*model.encode(x_val), generator=torch.Generator().manual_seed(0))
    model.train()
    return mi


def train(
    dataset: Dataset,
    data_config: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    checkpoint_path: Path,
    resume: bool = False,
    progress: bool = True,
    device: str = "cpu",
    world: World = ONE_PROCESS,
) -> Checkpoint:
    """Train on `device`, saving `checkpoint_path` after every epoch; with `resume`, continue from it.

    Every random draw is made on the CPU and moved to the device, so a run is the same draw for draw
    wherever it runs (and resumes), up to the device's rounding. With a launched `world` (torchrun), this
    process is one rank of a data-parallel run: only rank 0 scores validation and writes the checkpoint."""
    check_compatible(model_config, train_config)
    check_data_parallel(model_config, train_config, world)
    torch.manual_seed(train_config.seed)
    model = VAE(model_config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay
    )
    if resume and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path)
        if (state.model_config, state.train_config, state.data_config) != (model_config, train_config, data_config):
            raise ValueError(f"{checkpoint_path}: was written with other settings; resume takes the same ones")
        model.load_state_dict(state.model_state)
        optimizer.load_state_dict(state.optimizer_state)
    else:
        if Path(checkpoint_path).exists():
            previous = load_checkpoint(checkpoint_path)
            if not previous.finished:
                raise ValueError(
                    f"{checkpoint_path} holds an unfinished run (epoch {previous.epochs_done} of "
                    f"{previous.train_config.epochs}); pass --resume to continue it, or remove the file"
                )
        state = Checkpoint(
            model_config, train_config, data_config, epochs_done=0, model_state={}, optimizer_state={},
            best_state=copy.deepcopy(model.state_dict()), best_score=-math.inf, best_epoch=0,
        )
    with process_group(world, device):
        _train_epochs(dataset, model, optimizer, state, train_config, checkpoint_path, progress, device, world)
    return state


def _evaluations_without_gain(state: Checkpoint) -> int:
    scores = [r["val_loglik"] for r in state.history if "val_loglik" in r]
    best_at = max(range(len(scores)), key=scores.__getitem__, default=-1)
    return len(scores) - 1 - best_at if scores else 0


def _train_epochs(dataset: Dataset, model: VAE, optimizer: torch.optim.Optimizer, state: Checkpoint,
                  train_config: TrainConfig, checkpoint_path: Path, progress: bool, device: str, world: World) -> None:
    """The epochs still to run, updating `state` (and, on rank 0, the checkpoint) after each."""
    flat = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).reshape(len(a), -1)).to(device)
    train_raw, val_x = dataset.split_validation(train_config.val_fraction)
    val_x = flat(val_x)
    evaluations_without_gain = _evaluations_without_gain(state)
    encoder_parameters, other_parameters = encoder_and_rest(model)
    parallel_loss = data_parallel(model, train_config, device) if world.launched else None
    model.train()
    bar = tqdm(range(state.epochs_done, train_config.epochs), desc="train", unit="epoch",
               initial=state.epochs_done, total=train_config.epochs, disable=not (progress and world.leader))
    for epoch in bar:
        if state.finished:
            break
        generator = torch.Generator().manual_seed(epoch_seed(train_config.seed, epoch))
        torch.manual_seed(epoch_seed(train_config.seed, epoch))  # modules' own noise (x-dropout), resumable too
        x_epoch = dataset.observe(train_raw, np.random.default_rng([train_config.seed, epoch]))
        if train_config.perturbation:  # a stream of its own: the observed x are those of the unperturbed run
            x_epoch = perturb(x_epoch, train_config.perturbation,
                              np.random.default_rng([train_config.seed, epoch, PERTURBATION_STREAM]))
        x_epoch = flat(x_epoch)
        order = torch.randperm(len(x_epoch), generator=generator)
        if not world.leader:  # the same permutation as every rank; its own noise from here on
            generator = torch.Generator().manual_seed(rank_seed(train_config.seed, epoch, world.rank))
            torch.manual_seed(rank_seed(train_config.seed, epoch, world.rank))
        for group in optimizer.param_groups:
            group["lr"] = train_config.learning_rate_at(epoch)
        aggressive = train_config.aggressive and state.objective_state.get("aggressive", 1.0) > 0
        total, encoder_steps = 0.0, 0
        for start in range(0, len(order), train_config.batch_size):
            rows = order[start : start + train_config.batch_size]
            batch = x_epoch[share(rows, world).to(device)]
            if aggressive:
                def encoder_step() -> float:
                    fresh = random_batch(x_epoch, train_config.batch_size, generator)
                    loss = training_loss(model, fresh, train_config, epoch, generator, state.objective_state)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    drop_gradients(other_parameters)
                    optimizer.step()
                    return loss.item()

                encoder_steps += update_encoder_until_converged(
                    encoder_step, train_config.aggressive_max_steps, train_config.aggressive_window)
            if parallel_loss is None:
                loss = training_loss(model, batch, train_config, epoch, generator, state.objective_state)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            else:  # weighted by this rank's share of the rows: the ranks' average is the whole batch's gradient
                loss = parallel_loss(batch, epoch, generator, state.objective_state)
                optimizer.zero_grad(set_to_none=True)
                (loss * (world.size * len(batch) / len(rows))).backward()
            if aggressive:
                drop_gradients(encoder_parameters)  # the decoder's step; the encoder has just had its own
            optimizer.step()
            total += loss.item() * len(batch)
        if world.launched:
            total = sum_over_ranks(total, device)
        state.epochs_done = epoch + 1
        if world.leader:
            record = {"epoch": epoch + 1, "train_loss": total / len(order), "val_kl": validation_kl(model, val_x)}
            if aggressive:
                mi = validation_mutual_information(model, val_x)
                record.update(encoder_steps=encoder_steps, val_mutual_information=mi)
                if not stays_aggressive(state.objective_state.get("previous_mi", -math.inf), mi):
                    state.objective_state["aggressive"] = 0.0
                state.objective_state["previous_mi"] = mi
            last = epoch + 1 == train_config.epochs
            if (epoch + 1) % train_config.eval_every == 0 or last:
                score = validation_score(model, val_x, train_config.eval_samples)
                record["val_loglik"] = score
                if score > state.best_score:
                    state.best_score, state.best_epoch = score, epoch + 1
                    state.best_state = copy.deepcopy(model.state_dict())
                    evaluations_without_gain = 0
                else:
                    evaluations_without_gain += 1
                if train_config.patience and evaluations_without_gain >= train_config.patience:
                    state.finished = True
            state.history.append(record)
            state.finished = state.finished or last
            state.model_state = model.state_dict()
            state.optimizer_state = optimizer.state_dict()
            save_checkpoint(state, checkpoint_path)
            bar.set_postfix(loss=f"{record['train_loss']:.2f}", kl=f"{record['val_kl']:.2f}",
                            best_val=f"{state.best_score:.2f}")
        if world.launched:
            state.finished = leader_decides(state.finished or epoch + 1 == train_config.epochs, device)
