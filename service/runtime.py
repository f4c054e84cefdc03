"""The runtime tier: ONNX Runtime sessions for a model's two graphs, created once per load from the bytes read,
and the model's scorer (service.scoring), built from them once."""

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from modelrepo import Manifest, VersionFiles
from modelrepo.autoregressive import draw_autoregressive
from modelrepo.contract import DECODER_CONDITION, DECODER_INPUT, ENCODER_INPUT
from modelrepo.likelihood import Params, likelihood_for, prior_for
from modelrepo.manifest import CategoricalLatent, encoder_outputs
from service.errors import ModelRunFailed
from service.scoring import Scorer, build_scorer
from service.settings import Settings

log = logging.getLogger(__name__)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
QUIET = 3  # ONNX Runtime log severity: errors only (4 would hide them as well)
_DEFAULTS = Settings.model_fields


class RuntimeMismatch(ValueError):
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


@dataclass(frozen=True)
class RuntimeOptions:
    """How every version is loaded: the same for all of them, fixed at start-up (the defaults are Settings')."""

    providers: list[str]
    threads: int = _DEFAULTS["intra_op_threads"].default
    loglik_graph: str = _DEFAULTS["loglik_graph"].default
    precision: str = _DEFAULTS["loglik_precision"].default
    work_elements: int = _DEFAULTS["work_elements"].default
    cuda_work_elements: int = _DEFAULTS["cuda_work_elements"].default
    enumeration_limit: int = _DEFAULTS["enumeration_limit"].default

    @classmethod
    def from_settings(cls, settings: Settings, providers: list[str]) -> "RuntimeOptions":
        return cls(providers, settings.intra_op_threads, settings.loglik_graph, settings.loglik_precision,
                   settings.work_elements, settings.cuda_work_elements, settings.enumeration_limit)


class ModelRuntime:
    """encoder: x [N, *data_shape] -> mu, logvar [N, L] (categorical latents: logits [N, G, C]); decoder:
    z [N, *latent_shape] -> likelihood parameters; the model's math (modelrepo.likelihood) and its one scorer
    (service.scoring), all built once per load."""

    def __init__(self, source: VersionFiles | Path, manifest: Manifest, options: RuntimeOptions):
        """source: the version's files as read and verified (the service), or a folder to read them from."""
        if isinstance(source, VersionFiles):
            encoder, decoder = source.encoder, source.decoder
        else:
            encoder, decoder = (Path(source, getattr(manifest, role)).read_bytes() for role in ("encoder", "decoder"))
        session_options = ort.SessionOptions()
        session_options.log_severity_level = QUIET
        session_options.intra_op_num_threads = options.threads
        self.manifest = manifest
        self.data_shape = tuple(manifest.data_shape)
        self.latent_dim = manifest.latent_dim
        self.latent_shape = manifest.latent_shape  # (L,), or (G, C) for categorical latents
        self.categorical = isinstance(manifest.latent, CategoricalLatent)
        self.autoregressive = manifest.likelihood.autoregressive  # the decoder takes (z, x)
        if self.autoregressive and self.categorical:
            raise RuntimeMismatch("likelihood.autoregressive with categorical latents is not served (the exact sum "
                                  "over z and the categorical estimate decode z alone); use Gaussian latents for an "
                                  "autoregressive decoder, or drop likelihood.autoregressive")
        self.encoder_outputs = list(encoder_outputs(manifest))  # mu, logvar; or logits
        self.likelihood = likelihood_for(manifest.likelihood.type)
        self.prior = prior_for(manifest.prior, manifest.latent_shape)
        self.decoder_outputs = list(self.likelihood.outputs)
        self.encoder = ort.InferenceSession(encoder, session_options, providers=options.providers)
        self.decoder = ort.InferenceSession(decoder, session_options, providers=options.providers)
        self.provider = self.encoder.get_providers()[0]
        self._smoke_test()
        self.scorer: Scorer = build_scorer(self, encoder, decoder, session_options, options)

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

    def draw(self, z: np.ndarray, noise: np.ndarray, checkpoint=None) -> tuple[np.ndarray, Params]:
        """Autoregressive decoders: x ~ p(x|z) position by position (modelrepo.autoregressive), batched over the
        N latents z (N, *latent_shape); noise (N, D) from likelihood.noise. Returns x and the parameters at x,
        each (N, *data_shape)."""
        return draw_autoregressive(self.decode, self.likelihood, z, self.data_shape, noise, checkpoint)

    def _run(self, session: ort.InferenceSession, outputs: list[str], feeds: dict, role: str) -> list[np.ndarray]:
        try:
            results = session.run(outputs, feeds)
        except Exception as exc:  # ONNX Runtime raises its own types for any failure inside the graph
            log.error("%s:%s %s failed: %s", self.manifest.name, self.manifest.version, role, exc)
            raise ModelRunFailed(f"model {self.manifest.name}:{self.manifest.version}: its {role} graph failed "
                                 f"on a batch of {len(next(iter(feeds.values())))}; the model, not the request, "
                                 "is at fault") from None
        batch = len(next(iter(feeds.values())))
        for name, value in zip(outputs, results):
            if value.shape[:1] != (batch,):
                raise ModelRunFailed(f"model {self.manifest.name}:{self.manifest.version}: {role} output '{name}' "
                                     f"has {value.shape[0] if value.ndim else 0} rows for a batch of {batch}")
        return results

    def _smoke_test(self) -> None:
        """Run both graphs on two points: shapes the static check could not see fail here, at start-up."""
        latent = ", ".join(map(str, self.latent_shape))
        for name, value in zip(self.encoder_outputs, self.encode(np.zeros((2, *self.data_shape), np.float32))):
            if value.shape != (2, *self.latent_shape):
                raise RuntimeMismatch(f"encoder output '{name}' has shape {list(value.shape)} for a batch of 2, "
                                      f"expected [2, {latent}]")
        zeros = np.zeros((2, *self.data_shape), np.float32) if self.autoregressive else None
        for name, value in self.decode(np.zeros((2, *self.latent_shape), np.float32), zeros).items():
            if value.shape != (2, *self.data_shape):
                raise RuntimeMismatch(f"decoder output '{name}' has shape {list(value.shape)} for a batch of 2, "
                                      f"expected [2, {', '.join(map(str, self.data_shape))}]")
