"""The fused scoring graph in a session of its own, its inputs and outputs bound on the device."""

import math
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from modelrepo.importance import ImportanceEstimate, LogMeanExpAccumulator
from service.errors import ModelRunFailed
from service.fusion import OUTPUTS

CUDA = "CUDAExecutionProvider"


class FusedScorer:
    """x (N, *data_shape), eps (K, L) -> the importance estimate, with only 3N numbers leaving the device."""

    def __init__(self, model_bytes: bytes, options: ort.SessionOptions, providers: list[str], label: str):
        self.session = ort.InferenceSession(model_bytes, options, providers=providers)
        self.device = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        self.label = label  # "name:version", for error messages

    def estimate(self, x: np.ndarray, eps: np.ndarray, work_elements: int,
                 checkpoint: Callable[[], None] | None = None) -> ImportanceEstimate:
        """Blocks of points times slices of K, each at most ~work_elements values wide in the decoder's output;
        checkpoint(), when given, runs before every slice and raises to stop the work."""
        n, k = len(x), len(eps)
        per_run = max(1, work_elements // max(math.prod(x.shape[1:]), eps.shape[1]))  # (point, sample) pairs
        chunk = min(k, per_run)  # slices of K depend on k alone, so a point's sums do not depend on its batch
        block = max(1, min(n, per_run // chunk))
        eps = np.ascontiguousarray(eps, dtype=np.float32)
        eps_slices = [self._upload(eps[s : s + chunk]) for s in range(0, k, chunk)]  # uploaded once per request
        binding = self.session.io_binding()
        results = []
        for start in range(0, n, block):
            rows = np.ascontiguousarray(x[start : start + block])
            binding.bind_ortvalue_input("x", self._upload(rows))
            accumulator = LogMeanExpAccumulator(len(rows))
            for eps_slice in eps_slices:
                if checkpoint is not None:
                    checkpoint()
                binding.bind_ortvalue_input("eps", eps_slice)
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
