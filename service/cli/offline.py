"""What the offline commands share: the repository loaded as the service loads it, and a data file's points
scored chunk by chunk as /score scores a request's: checked the same way, then the engine's loglik with the
reference's k and seed (batch-independent: a point's numbers do not depend on its chunk), for the model and,
for a likelihood ratio, its background."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from modelrepo.datafiles import DataFile
from service.dataplane.inputs import check_probability_range, parse_batch
from service.engine.engine import ModelEngine
from service.engine.options import EngineOptions
from service.engine.repository import ModelRepository
from service.engine.sessions import providers_for
from service.errors import InvalidInput
from service.settings import Settings

CHUNK_ROWS = 1024  # points per engine call; what is alive at once inside it is bounded by the engine's slicing


def open_repository(settings: Settings) -> ModelRepository:
    """Every version of VAE_MODEL_REPOSITORY (or --repository), loaded exactly as the service loads them."""
    return ModelRepository.load(settings.model_repository,
                                EngineOptions.from_settings(settings, providers_for(settings.device)))


@dataclass(slots=True)
class ScoredChunk:
    first: int  # the file's index of the chunk's first point
    loglik: np.ndarray  # (n,) float64
    stderr: np.ndarray  # (n,)
    background_loglik: np.ndarray | None  # (n,), likelihood ratios only

    @property
    def score(self) -> np.ndarray:
        return self.loglik if self.background_loglik is None else self.loglik - self.background_loglik


def scored_chunks(engine: ModelEngine, background: ModelEngine | None, data: DataFile, k: int, seed: int,
                  first: int = 0, chunk_rows: int = CHUNK_ROWS) -> Iterator[ScoredChunk]:
    """The file's points from `first` on, a chunk at a time, with a progress bar on stderr."""
    engines = [engine] if background is None else [engine, background]
    with tqdm(total=len(data), initial=first, unit="points", desc=f"scoring with {engine.ref}", dynamic_ncols=True,
              leave=False) as progress:
        for start, rows in data.chunks(first, chunk_rows):
            points = checked_points(engines, rows, start)
            own = engine.loglik(points, k, seed)
            other = background.loglik(points, k, seed)["loglik"] if background is not None else None
            yield ScoredChunk(start, own["loglik"], own["stderr"], other)
            progress.update(len(rows))


def checked_points(engines: list[ModelEngine], rows: np.ndarray, first: int) -> np.ndarray:
    """Rows shaped as the models' data points, refused as /score refuses a request's (NaN, infinity, a shape that
    is not the model's, Bernoulli data outside [0, 1]); the error names the row of the file (1-based)."""
    try:
        points = parse_batch(rows, engines[0].data_shape, "x", len(rows))
        for engine in engines:
            if engine.likelihood_type == "bernoulli":
                check_probability_range(points, "x")
    except InvalidInput as exc:
        detail = exc.detail
        if detail.startswith("x[") and detail[2:].partition("]")[0].isdigit():
            index, _, rest = detail[2:].partition("]")
            detail = f"row {first + int(index) + 1}{rest}"
        raise InvalidInput(detail) from None
    return points
