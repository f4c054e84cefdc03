"""Command line: train, evaluate, export, baselines, build (all of them in a row), reference, ratio, report,
background-study, compare-estimators, collapse-study."""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from modelrepo.contract import DECODER_FILE, ENCODER_FILE, MANIFEST_FILE, MODEL_NAME
from training.config import DataConfig, ModelConfig, TrainConfig
from training.world import DATA_PARALLEL_COMMANDS, rank_prefix, world_from_environment
from training.presets import PRESETS, Preset


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "1"):
        return True
    if text.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


MODEL_FLAGS = {  # flag -> (ModelConfig field, type, help)
    "--data-shape": ("data_shape", _ints, "shape of one data point, e.g. 1,8,8 (files: reshapes each row)"),
    "--latent-dim": ("latent_dim", int, "latent dimensions"),
    "--hidden": ("hidden", _ints, "hidden widths of the encoder; the decoder mirrors them, e.g. 256,256"),
    "--activation": ("activation", str, "relu, elu or silu"),
    "--likelihood": ("likelihood", str, "bernoulli or gaussian"),
    "--gaussian-variance": ("gaussian_variance", str, "conditional (a function of z) or per_output"),
    "--prior": ("prior", str, "standard_normal or mixture_of_gaussians (learned with the model)"),
    "--prior-components": ("prior_components", int, "components of a mixture_of_gaussians prior"),
    "--latent": ("latent", str, "gaussian, or categorical (--groups one-hot vectors of --categories)"),
    "--groups": ("groups", int, "categorical latents: independent one-hot groups"),
    "--categories": ("categories", int, "categorical latents: categories per group"),
    "--decoder": ("decoder", str, "mlp (factorised p(x|z)) or made (autoregressive, p(x_d | z, x_<d))"),
    "--decoder-hidden": ("decoder_hidden", _ints, "decoder widths (default: --hidden reversed)"),
    "--x-dropout": ("x_dropout", float, "made: zero each x position fed to the decoder with this probability "
                                        "while training (Bowman et al. 2016); evaluation sees the full x"),
}
TRAIN_FLAGS = {
    "--epochs": ("epochs", int, "epochs of training"),
    "--batch-size": ("batch_size", int, "mini-batch size"),
    "--lr": ("learning_rate", float, "Adam learning rate"),
    "--lr-schedule": ("lr_schedule", str, "constant, or cosine decay to 0 at the last epoch"),
    "--weight-decay": ("weight_decay", float, "Adam weight decay"),
    "--seed": ("seed", int, "seed of initialisation and every random draw"),
    "--objective": ("objective", str, "elbo or iwae (importance-weighted bound)"),
    "--beta": ("beta", float, "weight of the KL term"),
    "--warmup-epochs": ("warmup_epochs", int, "KL weight rises linearly from 0 to beta over these epochs"),
    "--free-bits": ("free_bits", float, "nats per latent dimension below which KL is not penalised"),
    "--iw-samples": ("iw_samples", int, "k of the importance-weighted bound"),
    "--val-fraction": ("val_fraction", float, "share of the training rows held out to pick the checkpoint"),
    "--eval-every": ("eval_every", int, "epochs between validation scores"),
    "--patience": ("patience", int, "stop after this many validation scores without gain (0: never)"),
    "--estimator": ("estimator", str, "categorical latents: exact, score_function or gumbel_softmax"),
    "--baseline-decay": ("baseline_decay", float, "score function: decay of the moving-average baseline"),
    "--temperature-start": ("temperature_start", float, "Gumbel-softmax temperature at the first epoch"),
    "--temperature-end": ("temperature_end", float, "Gumbel-softmax temperature at the last epoch"),
    "--straight-through": ("straight_through", _yes_no, "Gumbel-softmax: one-hot forward pass (yes or no)"),
    "--aggressive": ("aggressive", _yes_no, "aggressive encoder training until I(x;z) stops rising "
                                            "(He et al. 2019; yes or no)"),
    "--aggressive-max-steps": ("aggressive_max_steps", int, "aggressive: most encoder steps per decoder step"),
    "--aggressive-window": ("aggressive_window", int, "aggressive: steps per loss comparison of the inner loop"),
    "--perturbation": ("perturbation", float, "background model (Ren et al. 2019): replace each training input "
                                              "value with this probability by a random one (binary: flip it)"),
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a shipped model's recipe")
    parser.add_argument("--dataset", help="digits, digits-binary, mnist-binary, or a .npy/.npz/.csv file of rows")
    parser.add_argument("--test-file", help="a separate test file (else 25%% of the rows, random_state 0)")
    parser.add_argument("--key", help="array name inside an .npz file")
    parser.add_argument("--image-shape", type=_ints, help="a file's rows are images: H,W (or H,W,C, C = 1 or 3); "
                                                          "written into the manifest's image entry")
    parser.add_argument("--image-range", type=_floats, help="with --image-shape: the pixel values' LO,HI "
                                                            "(default 0,1)")
    for flags in (MODEL_FLAGS, TRAIN_FLAGS):
        for flag, (field, kind, text) in flags.items():
            parser.add_argument(flag, dest=field, type=kind, help=text)


def _given(args: argparse.Namespace, flags: dict) -> dict:
    """Config field -> value, for the flags the user actually gave."""
    return {field: getattr(args, field) for field, _, _ in flags.values() if getattr(args, field) is not None}


def _configs(args: argparse.Namespace) -> tuple[str, DataConfig, ModelConfig, TrainConfig]:
    """Preset (if any) overridden by the flags that were given."""
    preset: Preset | None = PRESETS.get(args.preset) if args.preset else None
    if preset is None and not args.dataset:
        raise ValueError("name the data with --dataset (or start from a --preset)")
    data = preset.data if preset else DataConfig(args.dataset)
    if args.dataset or args.test_file or args.key or args.data_shape or args.image_shape or args.image_range:
        data = DataConfig(args.dataset or data.source, args.data_shape, args.key, args.test_file,
                          args.image_shape, args.image_range or (0.0, 1.0))
    model_overrides, train_overrides = _given(args, MODEL_FLAGS), _given(args, TRAIN_FLAGS)
    if preset:
        model = dataclasses.replace(preset.model, **model_overrides)
        train = dataclasses.replace(preset.train, **train_overrides)
    else:
        model = ModelConfig(**{"data_shape": (1,), **model_overrides})
        train = TrainConfig(**train_overrides)
    name = args.preset or Path(data.source).stem
    return name, data, model, train


def cmd_train(args: argparse.Namespace) -> None:
    from training.pipeline import run_training

    name, data, model, train = _configs(args)
    world = world_from_environment()
    checkpoint = run_training(data, model, train, Path(args.checkpoint or f"runs/{name}.pt"), args.resume, args.device,
                              world)
    if world.leader:
        print(f"best validation log-likelihood {checkpoint.best_score:.3f} nats at epoch {checkpoint.best_epoch}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from training.pipeline import run_evaluation

    metrics = run_evaluation(Path(args.checkpoint), args.k, args.seed, args.device)
    print(json.dumps({k: v for k, v in metrics.items() if k != "kl_per_dim"}, indent=2))


def cmd_baselines(args: argparse.Namespace) -> None:
    from training.pipeline import run_baselines

    _, data, model, train = _configs(args)
    for score in run_baselines(data, model, train):
        print(f"{score['name']:<40} {score['test_loglik']:10.3f}  ({score['chosen']})")


def cmd_export(args: argparse.Namespace) -> None:
    from training.pipeline import run_export

    path = run_export(Path(args.checkpoint), Path(args.repository), args.name, args.version, args.force)
    print(f"exported {path}")


def cmd_build(args: argparse.Namespace) -> None:
    from training.pipeline import run_baselines, run_evaluation, run_export, run_training

    name, data, model, train = _configs(args)
    checkpoint_path = Path(args.checkpoint or f"runs/{name}.pt")
    world = world_from_environment()
    run_training(data, model, train, checkpoint_path, args.resume, args.device, world)
    if not world.leader:  # rank 0 evaluates, runs the baselines and exports
        return
    metrics = run_evaluation(checkpoint_path, args.k, 0, args.device)
    if args.baselines:
        run_baselines(data, model, train, checkpoint_path)
    path = run_export(checkpoint_path, Path(args.repository), args.name or name, args.version, args.force)
    print(f"test log-likelihood {metrics['test_loglik']:.3f} nats (K={args.k}); exported {path}")


def cmd_reference(args: argparse.Namespace) -> None:
    from training.pipeline import run_reference

    name = args.name or args.preset
    if not name:
        raise ValueError("name the model with --name (or --preset)")
    print(f"wrote {run_reference(Path(args.repository), name, args.version, args.background)}")


def cmd_ratio(args: argparse.Namespace) -> None:
    from training.ratio import write_ratio_model

    path = write_ratio_model(Path(args.repository), args.model, args.background, args.name, args.version, args.force)
    print(f"exported {path}")


def cmd_background_study(args: argparse.Namespace) -> None:
    from training.background import write_study

    print(write_study(args.preset, Path(args.repository), args.model, args.rates, Path(args.output), args.k,
                      args.epochs))


def cmd_report(args: argparse.Namespace) -> None:
    from training.report import write_report

    print(write_report(Path(args.repository), Path(args.output), Path(args.readme) if args.readme else None))


def cmd_compare_estimators(args: argparse.Namespace) -> None:
    from training.compare import write_comparison

    print(write_comparison(Path(args.output), args.epochs, args.draws))


def cmd_collapse_study(args: argparse.Namespace) -> None:
    from training.collapse import write_study

    print(write_study(Path(args.output), args.epochs, args.seeds, args.k))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a VAE, checkpointing every epoch")
    _add_config_flags(train)
    train.add_argument("--checkpoint", help="checkpoint path (default runs/<name>.pt)")
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="test ELBO, log p(x) by importance sampling, KL, active units")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--k", type=int, default=5000, help="importance samples per test point")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.set_defaults(handler=cmd_evaluate)

    baselines = commands.add_parser("baselines", help="PPCA, Gaussian mixtures, Bernoulli mixtures on the same split")
    _add_config_flags(baselines)
    baselines.set_defaults(handler=cmd_baselines)

    export = commands.add_parser("export", help=f"write {ENCODER_FILE}, {DECODER_FILE}, {MANIFEST_FILE}")
    export.add_argument("--checkpoint", required=True)
    for command in (export,):
        command.add_argument("--repository", default="models", help="model repository folder")
        command.add_argument("--name", required=True, help=f"model name, {MODEL_NAME}")
        command.add_argument("--version", type=int, default=1)
        command.add_argument("--force", action="store_true", help="replace an existing version")
    export.set_defaults(handler=cmd_export)

    build = commands.add_parser("build", help="train, evaluate, baselines and export in one go")
    _add_config_flags(build)
    build.add_argument("--checkpoint", help="checkpoint path (default runs/<name>.pt)")
    build.add_argument("--resume", action="store_true", help="continue training from --checkpoint")
    build.add_argument("--k", type=int, default=5000, help="importance samples per test point")
    build.add_argument("--repository", default="models", help="model repository folder")
    build.add_argument("--name", help="model name (default: the preset's or the data file's)")
    build.add_argument("--version", type=int, default=1)
    build.add_argument("--force", action="store_true", help="replace an existing version")
    build.add_argument("--no-baselines", dest="baselines", action="store_false",
                       help="skip the classical baselines (slow on large data: a grid of full-covariance GMMs)")
    build.set_defaults(handler=cmd_build)

    reference = commands.add_parser("reference", help="(re)write a version's reference.json from its calibration "
                                                      "split, as export writes it")
    reference.add_argument("--preset", choices=sorted(PRESETS), help="the model of this name (default of --name)")
    reference.add_argument("--repository", default="models", help="model repository folder")
    reference.add_argument("--name", help="model name (default: the preset's)")
    reference.add_argument("--version", type=int, default=1)
    reference.add_argument("--background", help="name:version in the repository: a likelihood-ratio reference, "
                                                "log p_model(x) - log p_background(x)")
    reference.set_defaults(handler=cmd_reference)

    ratio = commands.add_parser("ratio", help="a second model name with another version's graphs and a "
                                              "likelihood-ratio reference against a background model")
    ratio.add_argument("--repository", default="models", help="model repository folder")
    ratio.add_argument("--model", required=True, help="name:version whose graphs it shares, e.g. digits-binary:1")
    ratio.add_argument("--background", required=True, help="name:version of the background model")
    ratio.add_argument("--name", required=True, help=f"the new model's name, {MODEL_NAME}")
    ratio.add_argument("--version", type=int, default=1)
    ratio.add_argument("--force", action="store_true", help="replace an existing version")
    ratio.set_defaults(handler=cmd_ratio)

    study = commands.add_parser("background-study", help="choose a background preset's perturbation rate on "
                                                         "validation (training/background.py)")
    study.add_argument("--preset", required=True, choices=sorted(PRESETS), help="a background preset")
    study.add_argument("--repository", default="models", help="where the base model is")
    study.add_argument("--model", required=True, help="name:version of the base model, e.g. digits-binary:1")
    study.add_argument("--rates", type=_floats, default=(0.05, 0.1, 0.2, 0.3), help="the grid, e.g. 0.05,0.1")
    study.add_argument("--k", type=int, default=1000, help="importance samples per validation point")
    study.add_argument("--epochs", type=int, help="fewer epochs than the preset's (a quicker, rougher study)")
    study.add_argument("--output", required=True, help="JSON file of the criterion per rate")
    study.set_defaults(handler=cmd_background_study)

    report = commands.add_parser("report", help="the results table of every model in a repository")
    report.add_argument("--repository", default="models")
    report.add_argument("--output", default="docs/RESULTS.md")
    report.add_argument("--readme", help="also refresh the table between the results markers in this file")
    report.set_defaults(handler=cmd_report)

    compare = commands.add_parser("compare-estimators",
                                  help="the categorical latents' estimators on digits-binary: log p(x), ELBO, "
                                       "gradient variance, time per epoch")
    compare.add_argument("--epochs", type=int, default=60, help="training epochs per estimator")
    compare.add_argument("--draws", type=int, default=200, help="gradient draws for the variance")
    compare.add_argument("--output", default="docs/ESTIMATORS.md")
    compare.set_defaults(handler=cmd_compare_estimators)

    collapse = commands.add_parser("collapse-study",
                                   help="posterior collapse with a MADE decoder on digits-binary and its remedies")
    collapse.add_argument("--epochs", type=int, default=80, help="training epochs per run")
    collapse.add_argument("--seeds", type=int, default=2, help="seeds per row")
    collapse.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    collapse.add_argument("--output", default="docs/COLLAPSE.md")
    collapse.set_defaults(handler=cmd_collapse_study)
    for command in (train, evaluate, build):
        command.add_argument("--device", default="cpu", help="torch device: cpu, or cuda (cuda:N) where a GPU is")
    return parser


def main(argv: list[str] | None = None) -> None:
    from training.export import ExportError

    args = build_parser().parse_args(argv)
    try:
        world = world_from_environment()
        if world.launched and args.command not in DATA_PARALLEL_COMMANDS:
            raise ValueError(f"only {' and '.join(DATA_PARALLEL_COMMANDS)} run under torchrun; run {args.command} "
                             f"as one process: python -m training {args.command} ...")
        args.handler(args)
    except (ValueError, ExportError) as exc:  # DataError, CheckpointError and config errors are ValueErrors
        print(f"{rank_prefix()}error: {exc}", file=sys.stderr)
        sys.exit(2)
