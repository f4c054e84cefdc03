"""The results table: every model in a repository beside its baselines, from the manifests alone."""

import re
from pathlib import Path

from modelrepo import Manifest, ManifestError, load_manifest
from modelrepo.contract import CATEGORICAL_LATENT, EXACT, MIXTURE_OF_GAUSSIANS
from modelrepo.files import write_atomic
from training.presets import PRESETS

MARKERS = ("<!-- results:start -->", "<!-- results:end -->")

# Binarised MNIST under the same protocol (dynamic binarisation, test log p(x) with K = 5000):
# Burda, Grosse and Salakhutdinov (2016), "Importance Weighted Autoencoders", Table 1, 3280 passes of training.
MNIST_LITERATURE = (
    ("VAE, 1 stochastic layer (k = 1)", -86.76),
    ("IWAE, 1 stochastic layer (k = 50)", -84.78),
    ("VAE, 2 stochastic layers (k = 1)", -85.33),
    ("IWAE, 2 stochastic layers (k = 50)", -82.90),
)


def latent_description(manifest: Manifest) -> str:
    """'8', '8, prior: 50 Gaussians', or '4 x 8 categorical'."""
    if manifest.latent.type == CATEGORICAL_LATENT:
        return f"{manifest.latent.groups} x {manifest.latent.categories} categorical"
    if manifest.prior.type == MIXTURE_OF_GAUSSIANS:
        return f"{manifest.latent_dim}, prior: {len(manifest.prior.logits)} Gaussians"
    return str(manifest.latent_dim)


def results_markdown(repository: Path) -> str:
    lines = [
        "| model | likelihood | latent | test log p(x), K = 5000 | IS std. error | test ELBO | active units | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    comparisons, literature = [], []
    for folder in sorted(p for p in Path(repository).glob("*/*") if p.is_dir() and not p.name.startswith(".")):
        try:
            manifest = load_manifest(folder)
        except ManifestError:
            continue
        metrics, name = getattr(manifest, "metrics", None) or {}, manifest.name
        if "test_loglik" not in metrics or getattr(manifest, "graphs_of", None):
            continue  # no figures, or another version's graphs under a second name (training/ratio.py)
        preset = PRESETS.get(name)
        target = f">= {preset.target_loglik:g}" if preset and preset.target_loglik is not None else ""
        loglik = metrics["test_loglik"]
        exact = " (exact)" if metrics.get("method") == EXACT else ""
        lines.append(
            f"| {manifest.reference} | {manifest.likelihood.type} | {latent_description(manifest)} "
            f"| **{loglik:.2f}**{exact} | {metrics['test_loglik_is_stderr']:.3f} | {metrics['test_elbo']:.2f} "
            f"| {metrics['active_units']} / {manifest.latent_dim} | {target} |"
        )
        if (getattr(manifest, "dataset", None) or {}).get("source") == "mnist-binary":
            literature += [f"| {manifest.reference} (ours) | **{loglik:.2f}** | |"]
            literature += [f"| {what} | {value:.2f} | {loglik - value:+.2f} |" for what, value in MNIST_LITERATURE]
        for baseline in getattr(manifest, "baselines", None) or []:
            comparisons.append(
                f"| {name} | {baseline['name']} | {baseline['chosen']} | {baseline['test_loglik']:.2f} "
                f"| {loglik - baseline['test_loglik']:+.2f} |"
            )
    text = "\n".join(lines)
    if comparisons:
        text += "\n\n| data | baseline | chosen on validation | test log p(x) | VAE gain (nats) |\n|---|---|---|---|---|\n"
        text += "\n".join(comparisons)
    if literature:
        text += ("\n\nBinarised MNIST next to Burda et al. (2016), Table 1 (same protocol):\n\n"
                 "| model | test log p(x), K = 5000 | ours minus it (nats) |\n|---|---|---|\n")
        text += "\n".join(literature)
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
