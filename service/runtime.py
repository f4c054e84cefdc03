"""The runtime tier: ONNX Runtime sessions for a model's two graphs, created once per load from the bytes read."""

import logging
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from modelrepo import Manifest, VersionFiles
from service.errors import ModelRunFailed
from service.fusion import build_scoring_model
from service.scoring import FusedScorer

log = logging.getLogger(__name__)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
QUIET = 3  # ONNX Runtime log severity: errors only (4 would hide them as well)


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


class ModelRuntime:
    """encoder: x [N, *data_shape] -> mu, logvar [N, L]; decoder: z [N, L] -> likelihood parameters;
    and, when asked for, the fused scoring graph derived from both (service.fusion)."""

    def __init__(self, source: VersionFiles | Path, manifest: Manifest, providers: list[str], threads: int = 0,
                 loglik_graph: str = "fused", precision: str = "fp32"):
        """source: the version's files as read and verified (the service), or a folder to read them from."""
        if isinstance(source, VersionFiles):
            encoder, decoder = source.encoder, source.decoder
        else:
            encoder, decoder = (Path(source, getattr(manifest, role)).read_bytes() for role in ("encoder", "decoder"))
        options = ort.SessionOptions()
        options.log_severity_level = QUIET
        options.intra_op_num_threads = threads
        self.manifest = manifest
        self.data_shape = tuple(manifest.data_shape)
        self.latent_dim = manifest.latent_dim
        self.decoder_outputs = ["logits"] if manifest.likelihood.type == "bernoulli" else ["mean", "logvar"]
        self.encoder = ort.InferenceSession(encoder, options, providers=providers)
        self.decoder = ort.InferenceSession(decoder, options, providers=providers)
        self.provider = self.encoder.get_providers()[0]
        self._smoke_test()
        self.scorer: FusedScorer | None = None
        self.scoring = "separate"  # what GET /models reports: "fused (fp32)", or "separate" and why
        self.precision = precision
        if loglik_graph == "fused":
            self._fuse(encoder, decoder, options, providers, precision)

    @property
    def numerics(self) -> str:
        """What decides the numbers besides the graphs' bytes: the scoring path, its precision, the provider."""
        scoring = f"fused-{self.precision}" if self.scorer is not None else "separate"
        return f"{scoring}/{self.provider}"

    def _fuse(self, encoder: bytes, decoder: bytes, options: ort.SessionOptions, providers: list[str],
              precision: str) -> None:
        """Build the fused graph; a model whose graphs cannot be joined keeps the two-graph path, and says so."""
        label = f"{self.manifest.name}:{self.manifest.version}"
        try:
            model = build_scoring_model(self.manifest, onnx.load_from_string(encoder), onnx.load_from_string(decoder),
                                        precision)
            self.scorer = FusedScorer(model.SerializeToString(), options, providers, label)
            self.scorer.estimate(np.zeros((2, *self.data_shape), np.float32),
                                 np.zeros((2, self.latent_dim), np.float32), 1 << 16)
        except Exception as exc:  # noqa: BLE001 - FusionError, ModelRunFailed, or ORT's own types
            self.scorer = None
            self.scoring = f"separate (the fused graph could not be built: {str(exc).splitlines()[0][:200]})"
            log.warning("model %s: %s", label, self.scoring)
            return
        self.scoring = f"fused ({precision})"

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (N, *data_shape) float32 -> mu (N, L), logvar (N, L)."""
        mu, logvar = self._run(self.encoder, ["mu", "logvar"], {"x": x}, "encoder")
        return mu, logvar

    def decode(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """z (N, L) float32 -> {"logits"} or {"mean", "logvar"}, each (N, *data_shape)."""
        return dict(zip(self.decoder_outputs, self._run(self.decoder, self.decoder_outputs, {"z": z}, "decoder")))

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
        mu, logvar = self.encode(np.zeros((2, *self.data_shape), np.float32))
        for name, value in (("mu", mu), ("logvar", logvar)):
            if value.shape != (2, self.latent_dim):
                raise RuntimeMismatch(f"encoder output '{name}' has shape {list(value.shape)} for a batch of 2, "
                                      f"expected [2, {self.latent_dim}]")
        for name, value in self.decode(np.zeros((2, self.latent_dim), np.float32)).items():
            if value.shape != (2, *self.data_shape):
                raise RuntimeMismatch(f"decoder output '{name}' has shape {list(value.shape)} for a batch of 2, "
                                      f"expected [2, {', '.join(map(str, self.data_shape))}]")
