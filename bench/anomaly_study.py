"""Issue 19's anomaly study: validity of /score's false-positive rate, detection of out-of-distribution sets, and
the one-class protocol of Ruff et al. (2018). Prints the tables and writes them into docs/ANOMALY.md.

    .venv/bin/python bench/anomaly_study.py [--repository models] [--parts validity,detection,oneclass]
        [--runs runs/anomaly] [--classes 0-9] [--epochs 50] [--budget-minutes M] [--points 1000] [--no-doc]

Everything is resumable: scores are kept under <runs>/scores (keyed by the version's digest, k, seed and the points'
bytes), fitted baselines under <runs>/baselines, and each one-class digit under <runs>/oneclass/class-<c>/, skipped
once its result.json exists (`make anomaly-study` runs all of it; bench/anomaly/ holds the parts).
"""

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly import report  # noqa: E402

PARTS = ("validity", "detection", "oneclass")


def digits(text: str) -> list[int]:
    """'0-9', '3', '1,4,7' -> digits."""
    chosen = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        chosen.update(range(int(first), int(last or first) + 1))
    if not chosen <= set(range(10)):
        raise argparse.ArgumentTypeError(f"digits are 0..9, got {text!r}")
    return sorted(chosen)


def machine() -> str:
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={threads}, Python {platform.python_version()}"


def repository_provenance(root: Path) -> str:
    """Where the model repository's files come from in git: ", the models of branch B at commit C" (and whether they
    differ from it), or nothing outside a git work tree."""
    import subprocess

    git = lambda *args: subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return ""
    dirty = ", with uncommitted changes" if git("status", "--porcelain", "--", ".") else ""
    return f", the models of branch {git('rev-parse', '--abbrev-ref', 'HEAD')} at {commit}{dirty}"


def open_repository(root: Path):
    from service.engine.options import EngineOptions
    from service.engine.repository import ModelRepository

    repository = ModelRepository.load(root, EngineOptions(providers=["CPUExecutionProvider"], threads=1))
    for name, failures in repository.failed.items():
        for failure in failures.values():
            print(f"warning: {name}/{failure.version} did not load and is left out: {failure.error}")
    return repository


def run_validity(args, repository, cache) -> str:
    from bench.anomaly.validity import FPRS, validity

    started = time.perf_counter()
    rows = validity(repository, cache)
    took = time.perf_counter() - started
    return (f"`python bench/anomaly_study.py --parts validity --repository {args.repository_label}`"
            f"{args.provenance}, on {args.date} ({machine()}; {took:.0f} s with the scores cache as it was). Each version's evaluation rows "
            f"(`training.data.calibration_split`: the test rows outside the calibration split its reference was made "
            f"from) scored as `/score` scores them, with the reference's k and seed; flagged = p_value <= fpr for fpr "
            f"in {', '.join(f'{f:g}' for f in FPRS)}. m / (n + 1) is the rate the conformal p-value delivers on "
            f"average over references (at most fpr); 'reference reproduced' is the largest difference between the "
            f"reference's scores and the calibration rows scored here (sorted), which shows the reference is the "
            f"calibration split's.\n\n" + report.validity_table(rows))


def run_detection(args, repository, cache) -> str:
    from bench.anomaly.detection import detection

    started = time.perf_counter()
    tables = detection(repository, cache, args.runs / "baselines", args.points)
    took = time.perf_counter() - started
    return (f"`python bench/anomaly_study.py --parts detection --repository {args.repository_label} --points "
            f"{args.points}`{args.provenance}, on {args.date} ({machine()}; {took:.0f} s with the caches as they "
            f"were). Each cell: "
            f"AUROC / FPR at 95% TPR, the out-of-distribution points the positive class, every score oriented so "
            f"that high = anomalous; an AUROC in bold is below 0.5 (the score ranks that set as more normal than "
            f"the model's own held-out data).\n\n" + report.detection_tables(tables))


def run_oneclass(args) -> str:
    from bench.anomaly.data import labelled_mnist
    from bench.anomaly.oneclass import OneClassConfig, finished_results, run_class, run_classes

    config = OneClassConfig().with_epochs(args.epochs)
    folder = args.runs / "oneclass"
    data = labelled_mnist()
    budget = None if args.budget_minutes is None else 60 * args.budget_minutes
    run_classes(args.classes, folder, lambda digit: run_class(digit, folder, data, config), config.describe(), budget)
    results = finished_results(folder, config.describe())
    model, train = config.model, config.train
    return (f"`python bench/anomaly_study.py --parts oneclass --epochs {args.epochs}` (last run {args.date}, "
            f"{machine()}; resumable, one digit at a time). Per digit: a VAE trained on that digit's images among "
            f"MNIST's first 50,000 training images (binarised afresh each epoch), its checkpoint chosen on that "
            f"digit's validation rows (the last 10,000, binarised once), then all 10,000 test images (mnist-binary's "
            f"binarisation) scored, the digit normal and the other nine anomalous. Model: MLP "
            f"{'-'.join(map(str, (784, *model.hidden, model.latent_dim)))} ({model.activation}), Bernoulli decoder, "
            f"standard normal prior; {train.objective} bound with k = {train.iw_samples}, Adam {train.learning_rate:g} "
            f"with cosine decay, batch {train.batch_size}, {train.epochs} epochs, {train.warmup_epochs}-epoch warm-up, "
            f"validation every {train.eval_every}; test log p(x) with K = {config.k} (seed {config.seed}). AUROC in %. "
            f"Ruff et al. use grey-level images (global contrast normalisation, min-max scaling) and 10 seeds; "
            f"these are binarised images and one seed.\n\n" + report.oneclass_table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "anomaly")
    parser.add_argument("--doc", type=Path, default=report.DOC)
    parser.add_argument("--classes", type=digits, default=list(range(10)))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no further one-class digit after this many minutes")
    parser.add_argument("--points", type=int, default=1000, help="in-distribution points per model, at most")
    parser.add_argument("--no-doc", action="store_true", help="print the tables only")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    args.date = datetime.date.today().isoformat()
    args.repository_label = os.path.relpath(args.repository.resolve(), ROOT) \
        if args.repository.resolve().is_relative_to(ROOT) else str(args.repository)
    args.provenance = repository_provenance(args.repository)
    sections = {}
    if "validity" in parts or "detection" in parts:
        from bench.anomaly.scores import ScoreCache

        repository = open_repository(args.repository)
        cache = ScoreCache(args.runs / "scores")
        if "validity" in parts:
            sections["anomaly-validity"] = run_validity(args, repository, cache)
        if "detection" in parts:
            sections["anomaly-detection"] = run_detection(args, repository, cache)
    if "oneclass" in parts:
        sections["anomaly-oneclass"] = run_oneclass(args)
    for name, text in sections.items():
        print(f"\n## {name}\n\n{text}\n")
        if not args.no_doc:
            report.write_section(name, text, args.doc)
    if sections and not args.no_doc:
        print(f"wrote {', '.join(sections)} in {args.doc}")


if __name__ == "__main__":
    main()
