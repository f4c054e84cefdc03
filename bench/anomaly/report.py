"""The study's tables as Markdown, and their sections of docs/ANOMALY.md (between <!-- NAME:start --> and
<!-- NAME:end -->, replaced in place, appended when missing: writing the same tables twice changes nothing)."""

from pathlib import Path

from bench.report import replace_section

DOC = Path(__file__).resolve().parents[2] / "docs" / "ANOMALY.md"
SECTIONS = ("anomaly-validity", "anomaly-detection", "anomaly-oneclass")

# Ruff et al. (2018), "Deep One-Class Classification", ICML, Table 1, MNIST, one-class Deep SVDD, mean AUROC (%) over
# 10 seeds, digits 0-9, as quoted (column "original") in a reimplementation's README found with the search tool;
# not checked against the paper's PDF. The table's OC-SVM, KDE and DCAE columns were not found: left out, not guessed.
DEEP_SVDD_ONE_CLASS = (98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def validity_table(rows) -> str:
    header = ["model", "score", "reference", "n ref.", "k", "n eval.", "fpr", "m / (n + 1)", "flagged",
              "observed FPR", "95% CI (Clopper-Pearson)", "flagged if valid (95%)", "reference reproduced"]
    body = []
    for r in rows:
        low, high = r.expected_range
        inside = "" if low <= r.flagged <= high else " (outside)"
        body.append([r.model, r.score, r.origin, str(r.n_reference), str(r.k), str(r.n_evaluation), f"{r.fpr:g}",
                     f"{r.bound:.4f}", str(r.flagged), percent(r.observed), f"[{percent(r.low)}, {percent(r.high)}]",
                     f"{low}-{high}{inside}", "-" if r.reproduced is None else f"{r.reproduced:.1e} nats"])
    return table(header, body)


def cell(figures: tuple[float, float] | None) -> str:
    """AUROC / FPR at 95% TPR; an AUROC below 0.5 in bold: that score ranks the set above the test data."""
    if figures is None:
        return "-"
    area, fpr = figures
    shown = f"**{area:.3f}**" if area < 0.5 else f"{area:.3f}"
    return f"{shown} / {fpr:.2f}"


def detection_tables(tables) -> str:
    parts = []
    for t in tables:
        parts.append(f"**{t.model}** ({t.n_normal} evaluation rows; {t.note})\n")
        header = ["out-of-distribution set", "n"] + t.scorers
        body = [[name, str(n)] + [cell(figures.get(s)) for s in t.scorers] for name, n, figures in t.rows]
        parts.append(table(header, body) + "\n")
    return "\n".join(parts)


def oneclass_table(results: dict[int, dict]) -> str:
    header = ["normal digit", "n train", "epochs (best)", "VAE -log p(x) AUROC", "VAE reconstruction AUROC",
              "Deep SVDD, one-class (Ruff et al. 2018, Table 1)", "time (train + score)"]
    body = []
    for digit in range(10):
        paper = f"{DEEP_SVDD_ONE_CLASS[digit]:.1f}"
        result = results.get(digit)
        if result is None:
            body.append([str(digit), "-", "-", "not yet run", "not yet run", paper, "-"])
            continue
        figures = result["scores"]
        seconds = result["seconds_training"] + result["seconds_scoring"]
        body.append([str(digit), str(result["n_train"]), f"{result['epochs']} ({result['best_epoch']})",
                     f"{100 * figures['loglik']['auroc']:.1f}", f"{100 * figures['reconstruction']['auroc']:.1f}",
                     paper, f"{result['seconds_training']:.0f} + {result['seconds_scoring']:.0f} s"
                     if seconds else "-"])
    done = [results[d] for d in sorted(results)]
    if done:
        mean = lambda key: sum(100 * r["scores"][key]["auroc"] for r in done) / len(done)
        paper_mean = sum(DEEP_SVDD_ONE_CLASS[r["digit"]] for r in done) / len(done)
        body.append([f"mean over the {len(done)} run", "", "", f"{mean('loglik'):.1f}", f"{mean('reconstruction'):.1f}",
                     f"{paper_mean:.1f}", ""])
    return table(header, body)


def write_section(name: str, text: str, path: Path = DOC) -> None:
    replace_section(name, text, path)
