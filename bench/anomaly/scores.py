"""The scores of the study, each an anomaly score (high = anomalous), and a cache that keeps them on disk.

    -loglik         -log p(x), estimated by the engine exactly as /loglik and /score estimate it (the reference's k
                    and seed): raw likelihood, low = anomalous, negated here
    -ratio          -(log p_model(x) - log p_background(x)), the likelihood ratio of Ren et al. (2019)
    reconstruction  mean squared error between x and decode(mu(x)), the score alibi-detect's OutlierVAE uses (the
                    mean of q(z|x) decoded to E[x|z]; for categorical latents, its most likely category per group)
    -baseline       -log p(x) under a classical density model fitted on the training split (training/baselines.py)

The cache is keyed by the model version's digest, k, seed and the points' own bytes, so a changed model or set is
recomputed and an interrupted run resumes where it stopped.
"""

import hashlib
import io
from pathlib import Path

import numpy as np

from modelrepo.files import write_atomic
from modelrepo.likelihood import one_hot
from service.engine.engine import ModelEngine

CHUNK = 500  # points per engine call: progress is saved between them


class ScoreCache:
    """One .npy file per (what was scored, the points); None as folder keeps nothing."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder is not None else None

    def get_or_compute(self, key: str, points: np.ndarray, compute) -> np.ndarray:
        if self.folder is None:
            return compute(points)
        digest = hashlib.sha256(np.ascontiguousarray(points, np.float32).tobytes()).hexdigest()[:16]
        path = self.folder / key / f"{digest}.npy"
        if path.exists():
            return np.load(path)
        values = np.asarray(compute(points), np.float64)
        buffer = io.BytesIO()
        np.save(buffer, values)
        write_atomic(path, buffer.getvalue())
        return values


def engine_key(engine: ModelEngine) -> str:
    return f"{engine.name}-{engine.version}-{engine.digest[:12]}"


def loglik(engine: ModelEngine, points: np.ndarray, k: int, seed: int, cache: ScoreCache) -> np.ndarray:
    """log p(x) (N,), as /loglik answers for (k, seed): a point's number does not depend on its batch."""
    def compute(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([engine.loglik(rows[start:start + CHUNK], k, seed)["loglik"]
                               for start in range(0, len(rows), CHUNK)])
    return cache.get_or_compute(f"{engine_key(engine)}-loglik-k{k}-seed{seed}", points, compute)


def reconstruction_error(engine: ModelEngine, points: np.ndarray, cache: ScoreCache) -> np.ndarray:
    """Mean over the values of (x - E[x | z = mean of q(z|x)])^2, (N,)."""
    def compute(rows: np.ndarray) -> np.ndarray:
        posterior = engine.encode(rows)
        if engine.categorical:  # logits (N, G, C): the most likely category of each group
            logits = posterior["logits"]
            z = one_hot(logits.argmax(-1), logits.shape[-1])
        else:
            z = posterior["mu"]
        mean = engine.decode(z.astype(np.float32))["mean"]  # (N, *data_shape)
        return ((rows - mean) ** 2).reshape(len(rows), -1).mean(1)
    return cache.get_or_compute(f"{engine_key(engine)}-reconstruction", points, compute)


def flat(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64).reshape(len(points), -1)
