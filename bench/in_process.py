"""The service's own computations called in process, without HTTP: the yardstick of "through HTTP / in process".

The one place in bench/ that knows how the service builds a model version's engine (service.engine.engine).
"""

import dataclasses
from pathlib import Path

import numpy as np

from service.engine.engine import ModelEngine
from service.engine.options import EngineOptions
from service.engine.sessions import providers_for
from service.settings import Settings
from service.types import Result


def load_engine(folder: Path, settings: Settings, loglik_graph: str | None = None,
                precision: str | None = None, **options) -> ModelEngine:
    """The model version in `folder` as the service loads it under `settings` (its device, intra-op threads,
    scoring graph and precision); loglik_graph, precision and any other EngineOptions field (kernel_tier=...)
    override the settings' ones."""
    base = EngineOptions.from_settings(settings, providers_for(settings.device))
    options = dataclasses.replace(base, loglik_graph=loglik_graph or base.loglik_graph,
                                  precision=precision or base.precision, **options)
    return ModelEngine.open(folder, options)


def encode(engine: ModelEngine, x: np.ndarray) -> Result:
    """x (N, *data_shape) float32 -> mu, logvar (N, L): one encoder run."""
    return engine.encode(x)


def loglik(engine: ModelEngine, x: np.ndarray, k: int, seed: int) -> Result:
    """The service's /loglik estimate of x (N, *data_shape) float32, sliced as the service slices it (the engine
    was built with the settings' slice widths): loglik, stderr, elbo (N,)."""
    return engine.loglik(x, k, seed)
