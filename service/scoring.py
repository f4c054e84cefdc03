"""The scorer of a model version: how /loglik gets its numbers, chosen once, when the version loads.

    KernelScorer     Triton kernels derived from the two graphs (service.kernels), when VAE_KERNEL_TIER allows,
                     the graphs are MLPs and the kernels agree with the graphs at load; else one of:

    FusedScorer      the fused graph (service.fusion) in a session of its own: float32 on the device, only
                     3N numbers leave it
    SeparateScorer   the model's two graphs, the likelihood in float64 on the host (modelrepo.likelihood)
    CategoricalScorer  categorical latents on the two graphs: the exact sum over every z up to
                     VAE_ENUMERATION_LIMIT configurations, importance sampling above it (modelrepo.categorical)

build_scorer picks one from the settings (VAE_LOGLIK_GRAPH, VAE_LOGLIK_PRECISION) and fixes its slice width
(VAE_WORK_ELEMENTS, or VAE_CUDA_WORK_ELEMENTS for the fused graph on CUDA). A model whose graphs cannot be
fused (categorical latents, autoregressive decoders), or whose fused graph fails its first run, gets a separate scorer and the reason in its description. All answer the same questions: plan(k) (the method
and the number of terms), estimate(x, k, seed, checkpoint); description (GET /models); numerics (what the
cache identity needs besides the files); device.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
import onnx
import onnxruntime as ort

from modelrepo.categorical import categorical_importance_loglik, category_noise, enumerated_loglik
from modelrepo.importance import ImportanceEstimate, LogMeanExpAccumulator
from modelrepo.likelihood import importance_sampled_loglik, latent_noise, slicing
from service.errors import ModelRunFailed
from service.fusion import DATA_INPUT, NOISE_INPUT, OUTPUTS, build_scoring_model

if TYPE_CHECKING:
    from service.runtime import ModelRuntime, RuntimeOptions

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
Checkpoint = Callable[[], None] | None  # runs before every slice and raises to stop the work
IMPORTANCE, EXACT = "importance", "exact"  # /loglik's "method"


class Scorer(Protocol):
    description: str  # GET /models' loglik_graph: "fused (fp32)", "separate", or "separate (why)"
    numerics: str  # what decides the numbers besides the files: the path, its precision, the provider
    device: str  # "cuda" or "cpu": where the decoder runs
    work_elements: int  # the slice width: about this many values alive at once (modelrepo.likelihood.slicing)
    tier: str  # GET /models' "tier": "onnxruntime", or "triton" (service.kernels)
    precision: str  # GET /models' "precision": the matmuls' operands ("fp32", "fp16", "bf16")
    kernel_tier_reason: str | None  # why the kernel tier does not serve the model (None: it does, or it is off)

    def plan(self, k: int) -> tuple[str, int]:
        """How a request for k samples is answered: (IMPORTANCE, k), or (EXACT, the number of terms summed)."""

    def estimate(self, x: np.ndarray, k: int, seed: int, checkpoint: Checkpoint = None) -> ImportanceEstimate:
        """x (N, *data_shape) float32 -> log p(x) per point as plan(k) says: from k samples of the seed's noise,
        or exactly."""


def build_scorer(runtime: ModelRuntime, encoder: bytes, decoder: bytes, session_options: ort.SessionOptions,
                 options: RuntimeOptions) -> Scorer:
    """The kernel tier's scorer when it fits the model and passes its check (service.kernels.tier), else the ONNX
    Runtime scorer the options ask for, which then carries the kernel tier's reason."""
    if options.kernel_tier == "off":
        return _onnx_scorer(runtime, encoder, decoder, session_options, options)
    from service.kernels.tier import build_kernel_scorer  # torch and triton only past this point, and only if there

    label = f"{runtime.manifest.name}:{runtime.manifest.version}"
    reference = SeparateScorer(runtime, options.work_elements)  # the float32 graphs, the likelihood in float64
    kernel_scorer, why = build_kernel_scorer(runtime, encoder, decoder, options, reference)
    if kernel_scorer is not None:
        log.info("model %s: Triton kernels (%s), %.2g nats from the ONNX graphs", label, kernel_scorer.precision,
                 kernel_scorer.verified_difference)
        return kernel_scorer
    onnx_scorer = _onnx_scorer(runtime, encoder, decoder, session_options, options)  # built only when needed
    onnx_scorer.kernel_tier_reason = why
    log.info("model %s: served by ONNX Runtime, not the kernel tier: %s", label, why)
    return onnx_scorer


def _onnx_scorer(runtime: ModelRuntime, encoder: bytes, decoder: bytes, session_options: ort.SessionOptions,
                 options: RuntimeOptions) -> Scorer:
    """The ONNX Runtime scorer the options ask for; the separate one, saying why, when the fused graph cannot serve."""
    if runtime.categorical:
        return CategoricalScorer(runtime, options.work_elements, options.enumeration_limit)
    if runtime.autoregressive:
        return SeparateScorer(runtime, options.work_elements, "autoregressive decoder, one teacher-forced pass per "
                              "slice; the fused graph serves decoders of z alone")
    if options.loglik_graph == "separate":
        return SeparateScorer(runtime, options.work_elements)
    manifest = runtime.manifest
    label = f"{manifest.name}:{manifest.version}"
    try:
        model = build_scoring_model(manifest, onnx.load_from_string(encoder), onnx.load_from_string(decoder),
                                    options.precision)
        scorer = FusedScorer(model.SerializeToString(), session_options, options, runtime)
        scorer.estimate(np.zeros((2, *runtime.data_shape), np.float32), 2, 0)  # fails here, not on a request
    except Exception as exc:  # noqa: BLE001 - FusionError, ModelRunFailed, or ORT's own types
        reason = (str(exc) or type(exc).__name__).splitlines()[0][:200]
        fallback = SeparateScorer(runtime, options.work_elements, f"the fused graph could not be built: {reason}")
        log.warning("model %s: %s", label, fallback.description)
        return fallback
    return scorer


class SeparateScorer:
    """The runtime's encoder and decoder as they are, and modelrepo.likelihood's float64 estimate over them."""

    tier, precision, kernel_tier_reason = "onnxruntime", "fp32", None

    def __init__(self, runtime: ModelRuntime, work_elements: int, why: str | None = None):
        self.runtime, self.work_elements = runtime, work_elements
        self.description = f"separate ({why})" if why else "separate"
        self.numerics = f"separate/{runtime.provider}"
        self.device = "cuda" if runtime.provider == CUDA else "cpu"

    def plan(self, k: int) -> tuple[str, int]:
        return IMPORTANCE, k

    def estimate(self, x: np.ndarray, k: int, seed: int, checkpoint: Checkpoint = None) -> ImportanceEstimate:
        runtime = self.runtime
        return importance_sampled_loglik(runtime.encode, runtime.decode, runtime.likelihood, runtime.prior, x,
                                         latent_noise(seed, k, runtime.latent_dim), self.work_elements, checkpoint,
                                         runtime.autoregressive)


class CategoricalScorer:
    """Categorical latents (G groups of C categories) on the runtime's two graphs, in float64 on the host: the
    exact sum over the C^G configurations when there are at most `enumeration_limit`, else the importance
    estimate with z ~ q(z|x). The fused graph serves Gaussian latents only."""

    tier, precision, kernel_tier_reason = "onnxruntime", "fp32", None

    def __init__(self, runtime: ModelRuntime, work_elements: int, enumeration_limit: int):
        self.runtime, self.work_elements = runtime, work_elements
        self.terms = runtime.manifest.latent.configurations
        self.exact = self.terms <= enumeration_limit
        how = (f"exact over its {self.terms} configurations" if self.exact else
               f"importance-sampled: its {self.terms} configurations are over VAE_ENUMERATION_LIMIT={enumeration_limit}")
        self.description = f"separate (categorical latents, {how}; the fused graph serves Gaussian latents only)"
        self.numerics = f"separate/{runtime.provider}"
        self.device = "cuda" if runtime.provider == CUDA else "cpu"

    def plan(self, k: int) -> tuple[str, int]:
        return (EXACT, self.terms) if self.exact else (IMPORTANCE, k)

    def estimate(self, x: np.ndarray, k: int, seed: int, checkpoint: Checkpoint = None) -> ImportanceEstimate:
        runtime = self.runtime
        graphs = (runtime.encode, runtime.decode, runtime.likelihood, runtime.prior, x)
        if self.exact:
            return enumerated_loglik(*graphs, self.work_elements, checkpoint)
        noise = category_noise(seed, k, runtime.prior.groups)
        return categorical_importance_loglik(*graphs, noise, self.work_elements, checkpoint)


class FusedScorer:
    """x (N, *data_shape), eps (K, L) -> the importance estimate, its inputs and outputs bound on the device."""

    tier, precision, kernel_tier_reason = "onnxruntime", "fp32", None

    def __init__(self, model_bytes: bytes, session_options: ort.SessionOptions, options: RuntimeOptions,
                 runtime: ModelRuntime):
        self.session = ort.InferenceSession(model_bytes, session_options, providers=options.providers)
        self.device = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        self.work_elements = options.cuda_work_elements if self.device == "cuda" else options.work_elements
        self.description, self.precision = f"fused ({options.precision})", options.precision
        self.numerics = f"fused-{options.precision}/{runtime.provider}"
        self.latent_dim = runtime.latent_dim
        self.label = f"{runtime.manifest.name}:{runtime.manifest.version}"  # for error messages

    def plan(self, k: int) -> tuple[str, int]:
        return IMPORTANCE, k

    def estimate(self, x: np.ndarray, k: int, seed: int, checkpoint: Checkpoint = None) -> ImportanceEstimate:
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
                if checkpoint is not None:
                    checkpoint()
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
