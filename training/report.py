"""The results table: every model in a repository beside its baselines, from the manifests alone."""

import json
import re
from pathlib import Path

from modelrepo.contract import MANIFEST_FILE
from modelrepo.files import write_atomic
from training.presets import PRESETS

MARKERS = ("<!-- results:start -->", "<!-- results:end -->")


def latent_description(manifest: dict) -> str:
    """'8', '8, prior: 50 Gaussians', or '4 x 8 categorical'."""
    latent, prior = manifest.get("latent") or {}, manifest.get("prior") or {}
    if latent.get("type") == "categorical":
        return f"{latent['groups']} x {latent['categories']} categorical"
    if prior.get("type") == "mixture_of_gaussians":
        return f"{manifest['latent_dim']}, prior: {len(prior['logits'])} Gaussians"
    return str(manifest["latent_dim"])


def _manifests(repository: Path) -> list[dict]:
    """Every readable manifest.json with test metrics. The figures are read as written; whether a model
    is servable is the service's question, so richer manifests are listed whatever modelrepo's schema knows."""
    found = []
    for folder in sorted(p for p in Path(repository).glob("*/*") if p.is_dir() and not p.name.startswith(".")):
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and "test_loglik" in (manifest.get("metrics") or {}):
            found.append(manifest)
    return found


def results_markdown(repository: Path) -> str:
    lines = [
        "| model | likelihood | latent | test log p(x), K = 5000 | IS std. error | test ELBO | active units | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    comparisons = []
    for manifest in _manifests(repository):
        metrics, name = manifest["metrics"], manifest["name"]
        preset = PRESETS.get(name)
        target = f">= {preset.target_loglik:g}" if preset and preset.target_loglik is not None else ""
        loglik = metrics["test_loglik"]
        exact = " (exact)" if metrics.get("method") == "exact" else ""
        lines.append(
            f"| {name}:{manifest['version']} | {manifest['likelihood']['type']} | {latent_description(manifest)} "
            f"| **{loglik:.2f}**{exact} | {metrics['test_loglik_is_stderr']:.3f} | {metrics['test_elbo']:.2f} "
            f"| {metrics['active_units']} / {manifest['latent_dim']} | {target} |"
        )
        for baseline in manifest.get("baselines") or []:
            comparisons.append(
                f"| {name} | {baseline['name']} | {baseline['chosen']} | {baseline['test_loglik']:.2f} "
                f"| {loglik - baseline['test_loglik']:+.2f} |"
            )
    text = "\n".join(lines)
    if comparisons:
        text += "\n\n| data | baseline | chosen on validation | test log p(x) | VAE gain (nats) |\n|---|---|---|---|---|\n"
        text += "\n".join(comparisons)
    return text + "\n"


def write_report(repository: Path, output: Path, readme: Path | None = None) -> str:
    table = results_markdown(repository)
    write_atomic(output, (
        "# Results of the shipped models\n\n"
        "Mean log-likelihood of the test split in nats per image (higher is better), importance-sampled with "
        "K = 5000 samples from q(z|x), or summed exactly over every z where marked (categorical latents). "
        "Split and preprocessing: README, \"Evaluation protocol\". Regenerate with `make models`.\n\n" + table
    ).encode())
    if readme is not None and readme.exists():
        start, end = MARKERS
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        write_atomic(readme, pattern.sub(lambda _: f"{start}\n{table}{end}", readme.read_text()).encode())
    return table
