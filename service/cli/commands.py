"""The offline commands of `python -m service` (without one it serves):

    python -m service reference NAME[:VERSION] --data FILE [--k 1000] [--seed 0] [--background NAME:VERSION]
                                [--key ARRAY] [--description TEXT] [--repository DIR]
    python -m service score NAME[:VERSION] --data FILE --out FILE.npz [--fpr 0.01] [--key ARRAY] [--repository DIR]

Both read the VAE_* settings as the service does (--repository overrides VAE_MODEL_REPOSITORY) and load the
repository as it does. Errors are one line on stderr and exit status 2.
"""

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from modelrepo.datafiles import DataFileError
from modelrepo.reference import ReferenceError
from service.cli.batch import score_file
from service.cli.reference import make_reference
from service.errors import ServiceError
from service.settings import Settings

COMMANDS = ("reference", "score")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m service", description="Without a command: serve the model "
                                  "repository (VAE_* settings). With one: work offline on the same models.")
    commands = top.add_subparsers(dest="command", required=True)
    reference = commands.add_parser("reference", help="write a version's reference.json from held-out points",
                                    description="Score held-out points (never used in training or model "
                                    "selection, so that new in-distribution points are exchangeable with them) "
                                    "and write <repository>/<name>/<version>/reference.json atomically; a running "
                                    "service picks it up on its next reload.")
    reference.add_argument("model", help="NAME (its highest version) or NAME:VERSION")
    reference.add_argument("--data", type=Path, required=True, help=".npy, .npz or .csv: one point per row")
    reference.add_argument("--k", type=int, default=1000, help="importance samples per point (default 1000)")
    reference.add_argument("--seed", type=int, default=0, help="their seed (default 0)")
    reference.add_argument("--background", help="NAME:VERSION: score by the likelihood ratio against this model")
    reference.add_argument("--description", help="the reference's data text (default: the points and the file)")
    score = commands.add_parser("score", help="score a whole data file against a version's reference",
                                description="Stream the file through /score's computation in bounded chunks; "
                                "resumable after an interruption. Writes loglik, stderr, score, p_value and "
                                "is_outlier per point to one .npz.")
    score.add_argument("model", help="NAME (its highest version) or NAME:VERSION")
    score.add_argument("--data", type=Path, required=True, help=".npy, .npz or .csv: one point per row")
    score.add_argument("--out", type=Path, required=True, help="the .npz to write")
    score.add_argument("--fpr", type=float, help="false-positive rate (default VAE_DEFAULT_FPR)")
    for command in (reference, score):
        command.add_argument("--key", help="the array to read from an .npz holding several")
        command.add_argument("--repository", type=Path, help="the model repository (default VAE_MODEL_REPOSITORY)")
    return top


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        overrides = {"model_repository": args.repository} if args.repository else {}
        settings = Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        print(f"error: VAE_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}", file=sys.stderr)
        return 2
    if args.command == "reference" and (args.k < 1 or args.seed < 0):
        print("error: --k must be at least 1 and --seed at least 0", file=sys.stderr)
        return 2
    try:
        if args.command == "reference":
            path, n = make_reference(settings, args.model, args.data, args.k, args.seed, args.background, args.key,
                                     args.description)
            print(f"wrote {path} ({n} points, k={args.k}, seed={args.seed})")
        else:
            if args.out.suffix != ".npz":
                raise DataFileError(f"--out: {args.out} must end in .npz")
            summary = score_file(settings, args.model, args.data, args.out, args.fpr, args.key)
            resumed = f", resumed from point {summary['resumed_from']}" if summary["resumed_from"] else ""
            print(f"wrote {args.out}: {summary['points']} points scored by {summary['model']}, "
                  f"{summary['outliers']} outliers (score below {summary['threshold']:.6g}){resumed}")
    except (ServiceError, DataFileError, ReferenceError) as exc:
        print(f"error: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 2
    return 0
