"""How every model version is loaded: the settings the engine tier reads, fixed at start-up."""

from dataclasses import dataclass

from service.settings import Settings
from service.types import CUDA_DEVICE

_DEFAULTS = Settings.model_fields


@dataclass(frozen=True)
class EngineOptions:
    """The same for every version; the defaults are Settings'. `providers`: ONNX Runtime's execution providers,
    in order of preference (engine.sessions.providers_for)."""

    providers: list[str]
    threads: int = _DEFAULTS["intra_op_threads"].default
    loglik_graph: str = _DEFAULTS["loglik_graph"].default
    precision: str = _DEFAULTS["loglik_precision"].default
    work_elements: int = _DEFAULTS["work_elements"].default
    cuda_work_elements: int = _DEFAULTS["cuda_work_elements"].default
    enumeration_limit: int = _DEFAULTS["enumeration_limit"].default
    kernel_tier: str = _DEFAULTS["kernel_tier"].default
    kernel_precision: str = _DEFAULTS["kernel_precision"].default
    kernel_tolerance_nats: float = _DEFAULTS["kernel_tolerance_nats"].default

    @classmethod
    def from_settings(cls, settings: Settings, providers: list[str]) -> "EngineOptions":
        return cls(providers, settings.intra_op_threads, settings.loglik_graph, settings.loglik_precision,
                   settings.work_elements, settings.cuda_work_elements, settings.enumeration_limit,
                   settings.kernel_tier, settings.kernel_precision, settings.kernel_tolerance_nats)

    def slice_width(self, device: str) -> int:
        """Values alive at once in one /loglik run (modelrepo.likelihood.slicing): larger runs pay off on CUDA."""
        return self.cuda_work_elements if device == CUDA_DEVICE else self.work_elements
