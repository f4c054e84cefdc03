"""The scorers: how a model version gets its /loglik numbers. engine.choice picks one per version, once.

    FusedScorer        the fused graph (engine.fusion) in a session of its own: float32 on the device, only
                       3N numbers leave it
    SeparateScorer     the model's two graphs, the likelihood in float64 on the host (modelrepo.likelihood)
    CategoricalScorer  categorical latents on the two graphs: the exact sum over every z up to
                       VAE_ENUMERATION_LIMIT configurations, importance sampling above it (modelrepo.categorical)
    KernelScorer       Triton kernels derived from the two graphs (engine.kernels.tier)

Each is built from the parts it computes with (sessions, prior, likelihood), never from the engine that owns it.
"""

import math
from typing import Protocol

import numpy as np
import onnxruntime as ort

from modelrepo.categorical import (
    categorical_importance_loglik,
    category_noise,
    enumerated_loglik,
)
from modelrepo.contract import EXACT, IMPORTANCE
from modelrepo.importance import ImportanceEstimate, LogMeanExpAccumulator
from modelrepo.likelihood import (
    Categorical,
    GaussianPrior,
    Likelihood,
    importance_sampled_loglik,
    latent_noise,
    slicing,
)
from modelrepo.stopping import ShouldStop, stop_if_asked
from service.engine.fusion import DATA_INPUT, NOISE_INPUT, OUTPUTS
from service.engine.options import EngineOptions
from service.engine.sessions import ModelSessions, device_of
from service.errors import ModelRunFailed
from service.types import LoglikPlan

ONNX_RUNTIME = "onnxruntime"  # GET /models' "tier" of every scorer but the kernel tier's


class Scorer(Protocol):
    description: str  # GET /models' loglik_graph: "fused (fp32)", "separate", or "separate (why)"
    numerics: str  # what decides the numbers besides the files: the path, its precision, the provider
    device: str  # "cuda" or "cpu": where the decoder runs
    work_elements: int  # the slice width: about this many values alive at once (modelrepo.likelihood.slicing)
    tier: str  # GET /models' "tier": ONNX_RUNTIME, or the kernel tier's
    precision: str  # GET /models' "precision": the matmuls' operands ("fp32", "fp16", "bf16")

    def plan(self, k: int) -> LoglikPlan:
        """How a request for k samples is answered: (IMPORTANCE, k), or (EXACT, the number of terms summed)."""

    def estimate(self, x: np.ndarray, k: int, seed: int, should_stop: ShouldStop | None = None) -> ImportanceEstimate:
        """x (N, *data_shape) float32 -> log p(x) per point as plan(k) says: from k samples of the seed's noise,
        or exactly."""


class SeparateScorer:
    """The model's encoder and decoder as they are, and modelrepo.likelihood's float64 estimate over them."""

    tier, precision = ONNX_RUNTIME, "fp32"

    def __init__(self, sessions: ModelSessions, prior: GaussianPrior, likelihood: Likelihood, work_elements: int,
                 why: str | None = None):
        self.sessions, self.prior, self.likelihood, self.work_elements = sessions, prior, likelihood, work_elements
        self.latent_dim = math.prod(sessions.latent_shape)  # the manifest's latent_dim
        self.description = f"separate ({why})" if why else "separate"
        self.numerics = f"separate/{sessions.provider}"
        self.device = sessions.device

    def plan(self, k: int) -> LoglikPlan:
        return LoglikPlan(IMPORTANCE, k)

    def estimate(self, x: np.ndarray, k: int, seed: int, should_stop: ShouldStop | None = None) -> ImportanceEstimate:
        sessions = self.sessions
        return importance_sampled_loglik(sessions.encode, sessions.decode, self.likelihood, self.prior, x,
                                         latent_noise(seed, k, self.latent_dim), self.work_elements, should_stop,
                                         sessions.autoregressive)


class CategoricalScorer:
    """Categorical latents (G groups of C categories) on the two graphs, in float64 on the host: the exact sum
    over the C^G configurations when there are at most `enumeration_limit`, else the importance estimate with
    z ~ q(z|x). The fused graph serves Gaussian latents only."""

    tier, precision = ONNX_RUNTIME, "fp32"

    def __init__(self, sessions: ModelSessions, prior: Categorical, likelihood: Likelihood, work_elements: int,
                 configurations: int, enumeration_limit: int):
        """configurations: C^G, the manifest's latent.configurations."""
        self.sessions, self.prior, self.likelihood, self.work_elements = sessions, prior, likelihood, work_elements
        self.terms = configurations
        self.exact = self.terms <= enumeration_limit
        how = (f"exact over its {self.terms} configurations" if self.exact else f"importance-sampled: its "
               f"{self.terms} configurations are over VAE_ENUMERATION_LIMIT={enumeration_limit}")
        self.description = f"separate (categorical latents, {how}; the fused graph serves Gaussian latents only)"
        self.numerics = f"separate/{sessions.provider}"
        self.device = sessions.device

    def plan(self, k: int) -> LoglikPlan:
        return LoglikPlan(EXACT, self.terms) if self.exact else LoglikPlan(IMPORTANCE, k)

    def estimate(self, x: np.ndarray, k: int, seed: int, should_stop: ShouldStop | None = None) -> ImportanceEstimate:
        parts = (self.sessions.encode, self.sessions.decode, self.likelihood, self.prior, x)
        if self.exact:
            return enumerated_loglik(*parts, self.work_elements, should_stop)
        noise = category_noise(seed, k, self.prior.groups)
        return categorical_importance_loglik(*parts, noise, self.work_elements, should_stop)


class FusedScorer:
    """x (N, *data_shape), eps (K, L) -> the importance estimate on the fused graph, its inputs and outputs bound
    on the device."""

    tier = ONNX_RUNTIME

    def __init__(self, graph: bytes, settings: ort.SessionOptions, options: EngineOptions, latent_dim: int,
                 label: str):
        """graph: the fused graph's bytes; label: the version, for error messages."""
        self.session = ort.InferenceSession(graph, settings, providers=options.providers)
        provider = self.session.get_providers()[0]
        self.device = device_of(provider)
        self.work_elements = options.slice_width(self.device)
        self.description, self.precision = f"fused ({options.precision})", options.precision
        self.numerics = f"fused-{options.precision}/{provider}"
        self.latent_dim, self.label = latent_dim, label

    def plan(self, k: int) -> LoglikPlan:
        return LoglikPlan(IMPORTANCE, k)

    def estimate(self, x: np.ndarray, k: int, seed: int, should_stop: ShouldStop | None = None) -> ImportanceEstimate:
        """Blocks of points times slices of K (modelrepo.likelihood.slicing); each slice of the noise is
        uploaded once per request."""
        eps = np.ascontiguousarray(latent_noise(seed, k, self.latent_dim), dtype=np.float32)  # (K, L)
        block, chunk = slicing(len(x), k, math.prod(x.shape[1:]), self.latent_dim, self.work_elements)
        eps_slices = [self._upload(eps[s : s + chunk]) for s in range(0, k, chunk)]
        binding = self.session.io_binding()
        results = []
        for start in range(0, len(x), block):
            rows = np.ascontiguousarray(x[start : start + block])
            binding.bind_ortvalue_input(DATA_INPUT, self._upload(rows))
            accumulator = LogMeanExpAccumulator(len(rows))
            for eps_slice in eps_slices:
                stop_if_asked(should_stop)
                binding.bind_ortvalue_input(NOISE_INPUT, eps_slice)
                for name in OUTPUTS:
                    binding.bind_output(name, self.device)
                self._run(binding, len(rows))
                accumulator.add_sums(*binding.copy_outputs_to_cpu(), count=eps_slice.shape()[0])
            results.append(accumulator.result())
        return ImportanceEstimate.concatenate(results)

    def _upload(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)

    def _run(self, binding: ort.IOBinding, rows: int) -> None:
        try:
            self.session.run_with_iobinding(binding)
        except Exception:  # ONNX Runtime raises its own types for any failure inside the graph
            raise ModelRunFailed(f"model {self.label}: its fused scoring graph failed on a batch of {rows}; the "
                                 "model, not the request, is at fault") from None
