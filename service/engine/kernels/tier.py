"""The kernel tier: /loglik on Triton kernels derived from a model's ONNX graphs, verified against them at load.

    x (N, D) --encoder, float32--> mu, logvar (N, L)
    z = mu + exp(logvar / 2) eps (N, K, L) --decoder's hidden layers, in the tier's precision--> h (N*K, H)
    h --last layer fused with the likelihood--> log p(x|z) (N*K,)     (engine.kernels.triton_mlp)
    (a decoder narrow enough, engine.kernels.triton_mlp.fits_on_chip, runs from z to log p(x|z) in one kernel)
    log w = log p(x|z) + log p(z) - log q(z|x) (N, K), float64 -> log sum w, log sum w^2, sum log w (N,)

A model gets the tier only when both graphs are MLPs (engine.kernels.pattern), torch and triton are installed
(the `gpu` extra) with a CUDA device (VAE_KERNEL_TIER=on also runs the kernels in Triton's interpreter on the
CPU, for tests), and its answers on samples drawn from the model itself are within VAE_KERNEL_TOLERANCE_NATS of
the float32 ONNX graphs' (float64 likelihood). Otherwise build_kernel_scorer raises TierUnavailable saying why,
and ONNX Runtime serves. torch and triton are imported here only when a model asks for the tier.
"""

import importlib
import importlib.util
import logging
import math
import os

import numpy as np
import onnx

from modelrepo import Manifest
from modelrepo.contract import (
    CATEGORICAL_LATENT,
    DECODER_INPUT,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    IMPORTANCE,
)
from modelrepo.importance import ImportanceEstimate, LogMeanExpAccumulator
from modelrepo.likelihood import (
    LOG_2PI,
    Likelihood,
    MixtureOfGaussians,
    Prior,
    latent_noise,
    slicing,
)
from modelrepo.stopping import ShouldStop, stop_if_asked
from service.engine.kernels.pattern import PatternRefused, Perceptron, read_perceptron
from service.engine.options import EngineOptions
from service.engine.scorers import Scorer
from service.engine.sessions import ModelSessions
from service.errors import ModelRunFailed
from service.types import CPU_DEVICE, CUDA_DEVICE, LoglikPlan

log = logging.getLogger(__name__)

TIER = "triton"
KERNELS = "service.engine.kernels.triton_mlp"
INTERPRET = "TRITON_INTERPRET"  # "1": triton runs kernels in its interpreter, on the CPU
VERIFY_POINTS, VERIFY_K, VERIFY_SEED = 16, 64, 20261201
# VAE_KERNEL_PRECISION -> (the hidden layers' operands, the last layer's, fused with the likelihood)
DTYPES = {"fp16": ("float16", "float16"), "bf16": ("bfloat16", "bfloat16"), "fp32": ("float32", "float32"),
          "fp16-last-fp32": ("float16", "float32")}


class TierUnavailable(Exception):
    """The tier cannot serve this model here; the message is the reason GET /models shows."""


# VAE_KERNEL_PRECISION=auto: the first of these whose check at load passes (bench/kernel_precision.py's table
# in docs/BENCHMARKS.md is the evidence): fp16 where it is close enough, else fp16 with the last layer in fp32
# (where fp16's rounding of the likelihood's parameters is what misses), else fp32. bf16 has fewer mantissa bits
# than fp16 and no more speed on the GPUs the tier targets: only when asked for by name.
AUTO_PRECISIONS = ("fp16", "fp16-last-fp32", "fp32")


def default_precision(differences: dict[str, float], tolerance: float) -> str | None:
    """The precision VAE_KERNEL_PRECISION=auto serves, given each one's difference from the float32 graphs."""
    return next((p for p in AUTO_PRECISIONS if differences.get(p, math.nan) <= tolerance), None)


def build_kernel_scorer(manifest: Manifest, encoder: bytes, decoder: bytes, sessions: ModelSessions, prior: Prior,
                        likelihood: Likelihood, options: EngineOptions,
                        reference: Scorer) -> tuple["KernelScorer", float]:
    """The verified scorer and its largest difference from `reference` in nats; TierUnavailable saying why not.
    VAE_KERNEL_PRECISION=auto tries AUTO_PRECISIONS in order and serves the first that passes."""
    asked = options.kernel_precision
    precisions = AUTO_PRECISIONS if asked == "auto" else (asked,)
    differences = {}
    try:
        encoder_mlp, decoder_mlp = _read(manifest, encoder, decoder)
        device, kernels = _device_and_kernels(options.kernel_tier)
        for precision in precisions:
            scorer = KernelScorer(manifest, prior, encoder_mlp, decoder_mlp, options, device, kernels, precision)
            try:
                differences[precision] = verify(scorer, reference, sessions, prior, likelihood)
            except Exception as exc:  # noqa: BLE001 - the one-kernel decoder failed (e.g. too big for the chip)
                if not scorer.on_chip:
                    raise
                log.warning("model %s: the one-kernel decoder failed (%s: %s); layer by layer instead",
                            manifest.reference, type(exc).__name__, str(exc).splitlines()[0][:160] if str(exc) else "")
                scorer = KernelScorer(manifest, prior, encoder_mlp, decoder_mlp, options, device, kernels, precision,
                                      on_chip=False)
                differences[precision] = verify(scorer, reference, sessions, prior, likelihood)
            if differences[precision] <= options.kernel_tolerance_nats:  # NaN never passes
                return scorer, differences[precision]
    except PatternRefused as exc:
        raise TierUnavailable(str(exc)) from None
    except TierUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - a kernel that fails to compile or run: the model stays on ORT
        text = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise TierUnavailable(f"the kernels failed: {type(exc).__name__}: {text}") from None
    found = ", ".join(f"{difference:.3g}" + (f" in {p}" if asked == "auto" else "")
                      for p, difference in differences.items())
    raise TierUnavailable(f"verification failed: {found} nats from the float32 ONNX graphs on "
                          f"{VERIFY_POINTS} points drawn from the model "
                          f"(VAE_KERNEL_TOLERANCE_NATS={options.kernel_tolerance_nats:g})")


def verify(scorer: Scorer, reference: Scorer, sessions: ModelSessions, prior: Prior, likelihood: Likelihood) -> float:
    """The largest difference in loglik (nats) from `reference` on points drawn from the model itself (z from the
    prior, x from p(x|z) through the ONNX decoder): data the model finds plausible, at its own scale. Not the
    elbo: one sample's log-weight can be ill-conditioned (a tiny variance), moving the float32 graphs' elbo too."""
    x = verification_points(sessions.decode, prior, likelihood)
    ours, theirs = scorer.estimate(x, VERIFY_K, 0), reference.estimate(x, VERIFY_K, 0)
    return float(np.abs(ours.loglik - theirs.loglik).max())


def verification_points(decode, prior: Prior, likelihood: Likelihood) -> np.ndarray:
    """The check's VERIFY_POINTS points (P, *data_shape) float32: z from the prior, x from p(x|z); decode: z (P, L)
    float32 -> the likelihood's parameters (the ONNX decoder). Scored at k = VERIFY_K with seed 0."""
    rng = np.random.default_rng(VERIFY_SEED)
    z = prior.sample(rng, VERIFY_POINTS).astype(np.float32)  # (P, L)
    return likelihood.sample(decode(z), rng).astype(np.float32)


def _read(manifest: Manifest, encoder: bytes, decoder: bytes) -> tuple[Perceptron, Perceptron]:
    """The two graphs as perceptrons (engine.kernels.pattern) of the model's widths; PatternRefused or
    TierUnavailable saying why not."""
    if manifest.latent.type == CATEGORICAL_LATENT:
        raise TierUnavailable("categorical latents: the kernels serve Gaussian latents")
    if manifest.likelihood.autoregressive:
        raise TierUnavailable("autoregressive decoder: the kernels serve decoders of z alone")
    likelihood = manifest.likelihood.type
    encoder_mlp = read_perceptron(onnx.load_from_string(encoder), ENCODER_INPUT, ENCODER_OUTPUTS)
    decoder_mlp = read_perceptron(onnx.load_from_string(decoder), DECODER_INPUT, DECODER_OUTPUTS[likelihood])
    data_dim, latent_dim = math.prod(manifest.data_shape), manifest.latent_dim
    _check_widths("encoder", encoder_mlp, data_dim, latent_dim)
    _check_widths("decoder", decoder_mlp, latent_dim, data_dim)
    return encoder_mlp, decoder_mlp


def _check_widths(role: str, mlp: Perceptron, inputs: int, outputs: int) -> None:
    widths = {name: head.weight.shape[1] for name, head in mlp.heads.items()}
    if mlp.input_width != inputs or set(widths.values()) != {outputs}:
        raise PatternRefused(f"the {role}'s layers take {mlp.input_width} inputs and give {widths}, not "
                             f"{inputs} -> {outputs}")


def _device_and_kernels(mode: str):
    """('cuda' or 'cpu', the kernels module): 'cpu' runs them in Triton's interpreter (VAE_KERNEL_TIER=on only).
    TierUnavailable saying what is missing."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("triton") is None:
        raise TierUnavailable("torch and triton are not installed (the `gpu` extra)")
    # auto: look for an NVIDIA device node before importing torch, so a CPU machine does not pay for the import
    if mode == "auto" and not os.path.exists("/dev/nvidiactl"):
        raise TierUnavailable("no CUDA device (VAE_KERNEL_TIER=on runs the kernels in Triton's interpreter on the CPU)")
    import torch

    if torch.cuda.is_available() and os.environ.get(INTERPRET) != "1":
        kernels = importlib.import_module(KERNELS)
        if kernels.INTERPRETED:
            raise TierUnavailable("the kernels were defined in Triton's interpreter earlier in this process "
                                  "(TRITON_INTERPRET=1), so they cannot run on the GPU here")
        return CUDA_DEVICE, kernels
    if mode != "on":
        raise TierUnavailable("no CUDA device torch can use (VAE_KERNEL_TIER=on runs the kernels in Triton's "
                              "interpreter on the CPU)")
    # Triton's interpreter is a mode of the whole process: triton reads the variable as its own functions and these
    # kernels are defined, and again as it runs them. Set here only when the tier is asked to run without CUDA.
    os.environ[INTERPRET] = "1"
    kernels = importlib.import_module(KERNELS)
    if not kernels.INTERPRETED:
        raise TierUnavailable("the kernels were compiled for the GPU before TRITON_INTERPRET was set")
    return CPU_DEVICE, kernels


class KernelScorer:
    """The Scorer protocol (engine.scorers) on the Triton kernels; weights on the device, once per load."""

    tier = TIER

    def __init__(self, manifest: Manifest, prior: Prior, encoder: Perceptron, decoder: Perceptron,
                 options: EngineOptions, device: str, kernels, precision: str, on_chip: bool = True):
        """kernels: the module engine.kernels.triton_mlp, imported compiled for the GPU or interpreted;
        precision: a key of DTYPES; on_chip: the one-kernel decoder where the widths allow (False: never)."""
        import torch

        self.torch, self.kernels = torch, kernels
        self.device, self.precision = device, precision
        self.dtype, self.last_dtype = (getattr(torch, name) for name in DTYPES[self.precision])
        self.work_elements = options.slice_width(device)
        self.latent_dim, self.prior = manifest.latent_dim, prior
        self.gaussian = manifest.likelihood.type == "gaussian"
        self.label = manifest.reference
        # The encoder in float32 (its N rows cost little; mu and logvar move every sample), its two heads one layer
        mu_head, logvar_head = (encoder.heads[name] for name in ENCODER_OUTPUTS)
        self.encoder_layers = [self._layer(layer.weight, layer.bias, layer.activation, layer.alpha, torch.float32)
                               for layer in encoder.hidden]
        self.encoder_layers.append(self._layer(np.concatenate([mu_head.weight, logvar_head.weight], axis=1),
                                               np.concatenate([mu_head.bias, logvar_head.bias]), "identity", 0.0,
                                               torch.float32))
        self.encoder_tails = (mu_head.tail, logvar_head.tail)  # applied in float64 to the N rows
        # The first decoder layer reads z in float32 (z is L wide: cheap) and writes the tier's precision: on
        # models/digits-binary in fp16 that took the difference from the graphs from 3.0e-3 to 2.3e-3 nats
        self.decoder_layers = [self._layer(layer.weight, layer.bias, layer.activation, layer.alpha,
                                           torch.float32 if i == 0 else self.dtype)
                               for i, layer in enumerate(decoder.hidden)]
        # each hidden layer writes the next one's operands: the last one writes the heads' (last_dtype)
        self.hidden_out = [self.dtype] * max(0, len(decoder.hidden) - 1) + [self.last_dtype]
        self.heads = [(*self._layer(head.weight, head.bias, "identity", 0.0, self.last_dtype)[:2], head.tail)
                      for head in decoder.heads.values()]
        self.on_chip = on_chip and kernels.fits_on_chip([layer.weight.shape[1] for layer in decoder.hidden],
                                                        math.prod(manifest.data_shape))
        self.layout = "one kernel" if self.on_chip else "layer by layer"
        self.description = f"triton kernels ({self.precision}, {self.layout})"
        # the layout decides the order of the float32 sums, so the numbers: the cache keys name it
        self.numerics = f"triton-{self.precision}-{'fused' if self.on_chip else 'layered'}/{device}"
        if isinstance(self.prior, MixtureOfGaussians):
            as64 = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
            self.mixture = (as64(self.prior.precision.T), as64(2.0 * (self.prior.mean * self.prior.precision).T),
                            as64(self.prior.log_constant))  # (L, C), (L, C), (C,)

    def _layer(self, weight, bias, activation, alpha, dtype):
        torch = self.torch
        return (torch.as_tensor(np.ascontiguousarray(weight), device=self.device).to(dtype).contiguous(),
                torch.as_tensor(np.asarray(bias, np.float32), device=self.device), activation, float(alpha))

    def plan(self, k: int) -> LoglikPlan:
        return LoglikPlan(IMPORTANCE, k)

    def estimate(self, x: np.ndarray, k: int, seed: int, should_stop: ShouldStop | None = None) -> ImportanceEstimate:
        """Blocks of points times slices of K (modelrepo.likelihood.slicing), as the ONNX scorers slice them."""
        torch = self.torch
        flat = np.ascontiguousarray(x, np.float32).reshape(len(x), -1)  # (N, D)
        eps = torch.tensor(latent_noise(seed, k, self.latent_dim), dtype=torch.float64,
                              device=self.device)  # (K, L)
        block, chunk = slicing(len(flat), k, flat.shape[1], self.latent_dim, self.work_elements)
        results = []
        try:
            with torch.inference_mode():
                for start in range(0, len(flat), block):
                    rows = torch.as_tensor(flat[start : start + block], device=self.device)  # (n, D)
                    mu, logvar = self._encode(rows)
                    accumulator = LogMeanExpAccumulator(len(rows))
                    for s in range(0, k, chunk):
                        stop_if_asked(should_stop)
                        sums = self._log_weight_sums(rows, mu, logvar, eps[s : s + chunk])
                        accumulator.add_sums(*(t.cpu().numpy() for t in sums), count=len(eps[s : s + chunk]))
                    results.append(accumulator.result())
        except (RuntimeError, ValueError) as exc:  # torch's and triton's failures inside the kernels
            raise ModelRunFailed(f"model {self.label}: its Triton kernels failed on a batch of {len(x)} "
                                 f"({type(exc).__name__}); the model, not the request, is at fault") from None
        return ImportanceEstimate.concatenate(results)

    def _encode(self, rows):
        """rows (n, D) float32 -> mu, logvar (n, L) float64."""
        h = rows
        for weight, bias, activation, alpha in self.encoder_layers:
            h = self.kernels.linear(h, weight, bias, activation, alpha, self.torch.float32)
        mu_tail, logvar_tail = self.encoder_tails
        return (_torch_tail(self.torch, h[:, : self.latent_dim].double(), mu_tail),
                _torch_tail(self.torch, h[:, self.latent_dim :].double(), logvar_tail))

    def _log_weight_sums(self, rows, mu, logvar, eps):
        """rows (n, D), mu and logvar (n, L), eps (c, L) -> log sum w, log sum w^2, sum log w over the c samples."""
        torch = self.torch
        n, c = len(rows), len(eps)
        std = torch.exp(0.5 * logvar)  # (n, L) float64
        z = mu[:, None] + std[:, None] * eps[None]  # (n, c, L) float64
        if self.on_chip:  # the reparameterisation in float32 inside the decoder's kernel
            as32 = lambda t: t.to(torch.float32).contiguous()  # noqa: E731
            log_px_z = self.kernels.decoder(as32(mu), as32(std), as32(eps), self.decoder_layers, self.heads, rows)
        else:
            h = z.reshape(n * c, -1).to(self.decoder_layers[0][0].dtype if self.decoder_layers else self.last_dtype)
            for (weight, bias, activation, alpha), out_dtype in zip(self.decoder_layers, self.hidden_out):
                h = self.kernels.linear(h, weight, bias, activation, alpha, out_dtype)  # (n*c, H)
            log_px_z = self.kernels.likelihood(h, self.heads, rows, c)
        log_px_z = log_px_z.double().view(n, c)  # (n, c)
        if self.gaussian:
            log_px_z = -0.5 * (log_px_z + rows.shape[1] * LOG_2PI)
        # log p(z) - log q(z|x), both without their 2 pi terms, which cancel
        minus_log_q = 0.5 * (logvar.sum(1)[:, None] + (eps * eps).sum(1)[None])  # (n, c)
        if isinstance(self.prior, MixtureOfGaussians):
            precision_t, cross_t, constant = self.mixture
            quadratic = (z * z) @ precision_t - z @ cross_t  # (n, c, C)
            log_prior = torch.logsumexp(constant - 0.5 * quadratic, dim=2)  # (n, c)
        else:
            log_prior = -0.5 * (z * z).sum(2)  # (n, c)
        log_w = log_px_z + log_prior + minus_log_q  # (n, c)
        return torch.logsumexp(log_w, 1), torch.logsumexp(2.0 * log_w, 1), log_w.sum(1)


def _torch_tail(torch, values, tail: tuple):
    """An encoder head's tail (engine.kernels.pattern) on its (n, L) float64 values."""
    functional = torch.nn.functional
    steps = {"identity": lambda v, a: v, "relu": lambda v, a: torch.relu(v),
             "leaky_relu": lambda v, a: functional.leaky_relu(v, a), "tanh": lambda v, a: torch.tanh(v),
             "sigmoid": lambda v, a: torch.sigmoid(v), "softplus": lambda v, a: torch.logaddexp(v, torch.zeros_like(v)),
             "elu": lambda v, a: functional.elu(v), "add": lambda v, a: v + a, "mul": lambda v, a: v * a,
             "max": lambda v, a: torch.clamp(v, min=a), "min": lambda v, a: torch.clamp(v, max=a),
             "softplus_above": lambda v, a: functional.softplus(v, threshold=a)}
    for step, number in tail:
        values = steps[step](values, number)
    return values
