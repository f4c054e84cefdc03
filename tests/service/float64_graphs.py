"""A model version's log p(x) in float64 throughout: its two ONNX graphs with every float32 weight widened to
float64 and run by the ONNX project's reference evaluator (onnx.reference, NumPy), then the contract's importance
estimate. The yardstick the kernel tier's precisions are measured against (tests/service/test_kernel_tier.py,
bench/kernel_precision.py); independent of engine.kernels.pattern's reading of the graphs."""

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator
from scipy import special

from modelrepo import load_manifest
from modelrepo.contract import DECODER_INPUT, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUTS
from modelrepo.likelihood import latent_noise, likelihood_for, prior_for


def float64_graph(path: Path) -> ReferenceEvaluator:
    """The graph at `path` with its float32 initializers and float32 inputs and outputs made float64."""
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    return ReferenceEvaluator(model)


class Float64Model:
    """folder: <name>/<version> with a Gaussian-latent, non-autoregressive model."""

    def __init__(self, folder: Path):
        self.manifest = load_manifest(Path(folder))
        self.encoder = float64_graph(Path(folder) / self.manifest.encoder)
        self.decoder = float64_graph(Path(folder) / self.manifest.decoder)
        self.likelihood = likelihood_for(self.manifest.likelihood.type)
        self.prior = prior_for(self.manifest.prior, self.manifest.latent_shape)

    def loglik(self, x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """x (N, *data_shape) -> loglik, elbo (N,) float64, on the noise eps (k, L) of `seed` as the service
        draws it."""
        n, data_dim, latent_dim = len(x), math.prod(x.shape[1:]), self.manifest.latent_dim
        eps = latent_noise(seed, k, latent_dim)  # (K, L) float64
        mu, logvar = self.encoder.run(list(ENCODER_OUTPUTS), {ENCODER_INPUT: x.astype(np.float64)})  # (N, L)
        z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps[None]  # (N, K, L)
        outputs = DECODER_OUTPUTS[self.manifest.likelihood.type]
        values = self.decoder.run(list(outputs), {DECODER_INPUT: z.reshape(n * k, latent_dim)})
        params = {name: value.reshape(n, k, data_dim) for name, value in zip(outputs, values)}
        log_q = -0.5 * (math.log(2 * math.pi) + logvar[:, None] + eps[None] ** 2).sum(-1)  # (N, K)
        log_w = (self.likelihood.log_density(x.reshape(n, 1, data_dim).astype(np.float64), params)
                 + self.prior.log_density(z) - log_q)  # (N, K)
        return special.logsumexp(log_w, axis=1) - math.log(k), log_w.mean(1)
