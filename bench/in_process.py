"""The service's own computations called in process, without HTTP: the yardstick of "through HTTP / in process".

The one place in bench/ that knows how the service builds a model's runtime and computes with it
(service.runtime.ModelRuntime, service.likelihood.importance_sampled_loglik): when those become one scorer
object per model, change this file alone.
"""

from pathlib import Path

import numpy as np

from modelrepo import load_manifest
from modelrepo.importance import ImportanceEstimate
from service.likelihood import importance_sampled_loglik
from service.runtime import ModelRuntime, providers_for
from service.settings import Settings


def load_runtime(folder: Path, settings: Settings, loglik_graph: str | None = None,
                 precision: str | None = None) -> ModelRuntime:
    """The model version in `folder` as the service loads it under `settings` (its device, intra-op threads,
    scoring graph and precision); loglik_graph and precision override the settings' ones."""
    manifest = load_manifest(folder)
    return ModelRuntime(folder, manifest, providers_for(settings.device), settings.intra_op_threads,
                        loglik_graph or settings.loglik_graph, precision or settings.loglik_precision)


def encode(runtime: ModelRuntime, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (N, *data_shape) float32 -> mu, logvar (N, L): one encoder run."""
    return runtime.encode(x)


def loglik(runtime: ModelRuntime, x: np.ndarray, k: int, seed: int, settings: Settings) -> ImportanceEstimate:
    """The service's /loglik estimate of x (N, *data_shape) float32, sliced as the service slices it."""
    on_cuda = runtime.scorer is not None and runtime.scorer.device == "cuda"
    work_elements = settings.cuda_work_elements if on_cuda else settings.work_elements
    return importance_sampled_loglik(runtime, x, k, seed, work_elements)
