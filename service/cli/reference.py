"""`python -m service reference NAME[:VERSION] --data FILE`: a version's reference.json (CONTRACT.md, section 3)
from held-out points, scored by the engine exactly as /score will score new ones."""

from pathlib import Path

import numpy as np

from modelrepo.contract import LIKELIHOOD_RATIO, LOGLIK_SCORE
from modelrepo.datafiles import DataFile
from modelrepo.reference import write_reference
from service.cli.offline import open_repository, scored_chunks
from service.errors import InvalidInput
from service.settings import Settings


def make_reference(settings: Settings, model: str, data_path: Path, k: int, seed: int, background: str | None,
                   key: str | None = None, description: str | None = None) -> tuple[Path, int]:
    """Score every point of the file and write <version>/reference.json atomically; (its path, n)."""
    repository = open_repository(settings)
    engine = repository.resolve(model, settings.default_model)
    other = None
    if background is not None:
        other = repository.resolve(background, settings.default_model)
        if other.data_shape != engine.data_shape:
            raise InvalidInput(f"--background: model {other.ref} has data_shape {list(other.data_shape)}, model "
                               f"{engine.ref} {list(engine.data_shape)}; a likelihood ratio needs the same data")
        if other is engine:
            raise InvalidInput("--background: the model itself; a likelihood ratio needs another model")
    if k > settings.max_k:
        raise InvalidInput(f"--k: {k} is over the service's limit of {settings.max_k} (VAE_MAX_K): /score could not "
                           "use this reference")
    data = DataFile(data_path, key)
    scores = np.concatenate([chunk.score for chunk in scored_chunks(engine, other, data, k, seed)])
    text = description or f"{len(scores)} points of {data_path.name}"
    folder = Path(settings.model_repository) / engine.name / str(engine.version)
    path = write_reference(folder, LIKELIHOOD_RATIO if other else LOGLIK_SCORE, k, seed, scores, text,
                           other.ref if other else None)
    return path, len(scores)
