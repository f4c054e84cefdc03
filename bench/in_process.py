"""The service's own computations called in process, without HTTP: the yardstick of "through HTTP / in process".

The one place in bench/ that knows how the service builds a model's runtime and computes with it
(service.runtime.ModelRuntime and the model's one scorer, service.scoring).
"""

import dataclasses
from pathlib import Path

import numpy as np

from modelrepo import load_manifest
from modelrepo.importance import ImportanceEstimate
from service.runtime import ModelRuntime, RuntimeOptions, providers_for
from service.settings import Settings


def load_runtime(folder: Path, settings: Settings, loglik_graph: str | None = None,
                 precision: str | None = None, **options) -> ModelRuntime:
    """The model version in `folder` as the service loads it under `settings` (its device, intra-op threads,
    scoring graph and precision); loglik_graph, precision and any other RuntimeOptions field (kernel_tier=...)
    override the settings' ones."""
    base = RuntimeOptions.from_settings(settings, providers_for(settings.device))
    options = dataclasses.replace(base, loglik_graph=loglik_graph or base.loglik_graph,
                                  precision=precision or base.precision, **options)
    return ModelRuntime(folder, load_manifest(folder), options)


def encode(runtime: ModelRuntime, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (N, *data_shape) float32 -> mu, logvar (N, L): one encoder run."""
    return runtime.encode(x)


def loglik(runtime: ModelRuntime, x: np.ndarray, k: int, seed: int, settings: Settings) -> ImportanceEstimate:
    """The service's /loglik estimate of x (N, *data_shape) float32, sliced as the service slices it (the
    scorer was built with the settings' slice widths)."""
    return runtime.scorer.estimate(x, k, seed)
