"""ONNX Runtime for a model version: the execution providers, and the sessions of its two graphs, created once
per load from the bytes the repository read and verified.

    encoder  x [N, *data_shape] -> mu, logvar [N, L]      (categorical latents: logits [N, G, C])
    decoder  z [N, *latent_shape] (and x, when autoregressive) -> the likelihood's parameters [N, *data_shape]
"""

import logging
from functools import cache

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from modelrepo import Manifest
from modelrepo.contract import (
    DECODER_CONDITION,
    DECODER_INPUT,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
)
from modelrepo.manifest import encoder_outputs
from service.engine.options import EngineOptions
from service.errors import ModelRunFailed
from service.types import CPU_DEVICE, CUDA_DEVICE

log = logging.getLogger(__name__)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
QUIET = 3  # ONNX Runtime log severity: errors only (4 would hide them as well)


class GraphMismatch(ValueError):
    """A graph that loads but does not produce what the contract promises."""


@cache
def cuda_usable() -> bool:
    """Whether ONNX Runtime can really run on CUDA here (onnxruntime-gpu lists it even without a GPU)."""
    if CUDA not in ort.get_available_providers():
        return False
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the failed CUDA load is expected on CPU machines: keep it out of the log
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=[CUDA, CPU])
        return session.get_providers()[0] == CUDA
    except Exception:  # noqa: BLE001 - any failure means: not usable
        return False
    finally:
        ort.set_default_logger_severity(QUIET)


def providers_for(device: str) -> list[str]:
    """Execution providers for the `device` setting; raises when CUDA is demanded and missing."""
    if device == "cpu":
        return [CPU]
    if cuda_usable():
        return [CUDA, CPU]
    if device == "cuda":
        raise RuntimeError("VAE_DEVICE=cuda but ONNX Runtime cannot use CUDA here (no GPU or CUDA libraries)")
    log.info("CUDA is not usable by ONNX Runtime here; serving on the CPU")
    return [CPU]


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = QUIET
    options.intra_op_num_threads = threads
    return options


def device_of(provider: str) -> str:
    """'cuda' or 'cpu': where a session with this execution provider runs."""
    return CUDA_DEVICE if provider == CUDA else CPU_DEVICE


class ModelSessions:
    """The two graphs of one version in ONNX Runtime sessions, each output checked to have a row per input row."""

    def __init__(self, manifest: Manifest, encoder: bytes, decoder: bytes, options: EngineOptions):
        self.label = manifest.reference  # for error messages
        self.data_shape = tuple(manifest.data_shape)
        self.latent_shape = manifest.latent_shape  # (L,), or (G, C) for categorical latents
        self.autoregressive = manifest.likelihood.autoregressive  # the decoder takes (z, x)
        self.encoder_outputs = list(encoder_outputs(manifest))  # mu, logvar; or logits
        self.decoder_outputs = list(DECODER_OUTPUTS[manifest.likelihood.type])
        settings = session_options(options.threads)
        self.encoder = ort.InferenceSession(encoder, settings, providers=options.providers)
        self.decoder = ort.InferenceSession(decoder, settings, providers=options.providers)
        self.provider = self.encoder.get_providers()[0]
        self.device = device_of(self.provider)
        self._smoke_test()

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """x (N, *data_shape) float32 -> mu (N, L), logvar (N, L); categorical latents: (logits (N, G, C),)."""
        return tuple(self._run(self.encoder, self.encoder_outputs, {ENCODER_INPUT: x}, "encoder"))

    def decode(self, z: np.ndarray, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """z (N, *latent_shape) float32 -> {"logits"} or {"mean", "logvar"}, each (N, *data_shape). An
        autoregressive decoder takes x (N, *data_shape) float32 too, and gives p(x_d | z, x_<d) at every d."""
        feeds = {DECODER_INPUT: z}
        if self.autoregressive:
            if x is None:
                raise ValueError("an autoregressive decoder needs x beside z")
            feeds[DECODER_CONDITION] = x
        outputs = self._run(self.decoder, self.decoder_outputs, feeds, "decoder")
        return dict(zip(self.decoder_outputs, outputs))

    def _run(self, session: ort.InferenceSession, outputs: list[str], feeds: dict, role: str) -> list[np.ndarray]:
        batch = len(next(iter(feeds.values())))
        try:
            results = session.run(outputs, feeds)
        except Exception as exc:  # ONNX Runtime raises its own types for any failure inside the graph
            log.error("%s %s failed: %s", self.label, role, exc)
            raise ModelRunFailed(f"model {self.label}: its {role} graph failed on a batch of {batch}; the model, "
                                 "not the request, is at fault") from None
        for name, value in zip(outputs, results):
            if value.shape[:1] != (batch,):
                raise ModelRunFailed(f"model {self.label}: {role} output '{name}' has "
                                     f"{value.shape[0] if value.ndim else 0} rows for a batch of {batch}")
        return results

    def _smoke_test(self) -> None:
        """Run both graphs on two points: shapes the static check could not see fail here, at start-up."""
        latent = ", ".join(map(str, self.latent_shape))
        for name, value in zip(self.encoder_outputs, self.encode(np.zeros((2, *self.data_shape), np.float32))):
            if value.shape != (2, *self.latent_shape):
                raise GraphMismatch(f"encoder output '{name}' has shape {list(value.shape)} for a batch of 2, "
                                    f"expected [2, {latent}]")
        zeros = np.zeros((2, *self.data_shape), np.float32) if self.autoregressive else None
        for name, value in self.decode(np.zeros((2, *self.latent_shape), np.float32), zeros).items():
            if value.shape != (2, *self.data_shape):
                raise GraphMismatch(f"decoder output '{name}' has shape {list(value.shape)} for a batch of 2, "
                                    f"expected [2, {', '.join(map(str, self.data_shape))}]")
