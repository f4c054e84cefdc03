"""Hand-written references (CONTRACT.md, section 3), as a user who never saw our code would write them."""

import json
from pathlib import Path


def write_reference(folder: Path, scores, k: int = 1000, seed: int = 0, score: str = "loglik",
                    background: str | None = None, **extra) -> Path:
    document = {"format": "vae-reference/1", "score": score, "k": k, "seed": seed,
                "scores": [float(s) for s in scores], "data": "hand-written for a test", **extra}
    if background is not None:
        document["background"] = background
    path = Path(folder) / "reference.json"
    path.write_text(json.dumps(document))
    return path


def conformal_by_hand(reference: list[float], score: float, fpr: float) -> tuple[float, bool, float | None]:
    """(p_value, is_outlier, threshold) counted one by one, as the contract states them."""
    n = len(reference)
    p_value = (1 + sum(1 for s in reference if s <= score)) / (n + 1)
    m = int(fpr * (n + 1) + 1e-12)  # floor(fpr (n + 1)), for fprs that are not a rounding away from a rank
    threshold = sorted(reference)[m - 1] if m >= 1 else None
    return p_value, p_value <= fpr, threshold
