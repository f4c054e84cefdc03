"""The fused scoring graph: a model's encoder and decoder joined, with the likelihood and the log-mean-exp,
into one ONNX graph that runs end to end on the device.

    inputs   x [N, *data_shape], eps [K, L]
    outputs  log_sum_w [N]   = log sum_i w_i
             log_sum_w2 [N]  = log sum_i w_i^2
             sum_log_w [N]   = sum_i log w_i          with log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)

Only these 3N numbers come back; they combine exactly across slices of K (modelrepo.importance), so the
graph never bakes in K. It is derived from the two files the contract defines, whoever wrote them.
"""

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter
from onnx.compose import add_prefix

from modelrepo import Manifest
from modelrepo.contract import (
    DECODER_INPUT,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    GAUSSIAN_LATENT,
    STANDARD_NORMAL,
)
from modelrepo.likelihood import LOG_2PI, MixtureOfGaussians, prior_for

MIN_OPSET = 13  # Unsqueeze and ReduceSum take axes as an input from here on
DATA_INPUT, NOISE_INPUT = "x", "eps"
OUTPUTS = ("log_sum_w", "log_sum_w2", "sum_log_w")


class FusionError(ValueError):
    """The two graphs cannot be joined (an opset that cannot be converted, clashing local functions)."""


def build_scoring_model(manifest: Manifest, encoder: onnx.ModelProto, decoder: onnx.ModelProto,
                        precision: str = "fp32") -> onnx.ModelProto:
    """The fused graph for `manifest`'s model; precision fp16 runs the decoder's arithmetic in float16.
    Gaussian latents only (a standard-normal or mixture-of-Gaussians prior): FusionError for categorical ones."""
    if manifest.latent.type != GAUSSIAN_LATENT:
        raise FusionError(f"it serves Gaussian latents, and this model has {manifest.latent.type} latents")
    opset = max(MIN_OPSET, _default_opset(encoder), _default_opset(decoder))
    encoder, decoder = (_at_opset(m, opset) for m in (encoder, decoder))
    if precision == "fp16":
        from onnxruntime.transformers.float16 import (
            convert_float_to_float16,  # ships with onnxruntime
        )

        decoder = convert_float_to_float16(decoder, keep_io_types=True, disable_shape_infer=True)
    encoder, decoder = add_prefix(encoder, "encoder/"), add_prefix(decoder, "decoder/")
    nodes = _Nodes(opset)
    data_dim, latent_dim = math.prod(manifest.data_shape), manifest.latent_dim

    mu, encoded_logvar = (f"encoder/{name}" for name in ENCODER_OUTPUTS)  # the graphs' names, prefixed
    decoded = [f"decoder/{name}" for name in DECODER_OUTPUTS[manifest.likelihood.type]]

    nodes.add("Identity", [DATA_INPUT], [f"encoder/{ENCODER_INPUT}"])
    nodes.extend(encoder.graph.node)  # -> mu, encoded_logvar  (N, L)
    std = nodes.add("Exp", [nodes.add("Mul", [encoded_logvar, nodes.const(0.5)])])  # (N, L)
    mu3 = nodes.add("Unsqueeze", [mu, nodes.const([1])])  # (N, 1, L)
    std3 = nodes.add("Unsqueeze", [std, nodes.const([1])])  # (N, 1, L)
    eps3 = nodes.add("Unsqueeze", [NOISE_INPUT, nodes.const([0])])  # (1, K, L)
    z = nodes.add("Add", [mu3, nodes.add("Mul", [std3, eps3])])  # (N, K, L)
    nodes.add("Reshape", [z, nodes.const([-1, latent_dim])], [f"decoder/{DECODER_INPUT}"])  # (N*K, L)
    nodes.extend(decoder.graph.node)  # -> decoder outputs (N*K, *data_shape)

    k = nodes.add("Slice", [nodes.add("Shape", [NOISE_INPUT]), nodes.const([0]), nodes.const([1])])  # [K]
    per_sample = nodes.add("Concat", [nodes.const([-1]), k, nodes.const([data_dim])], axis=0)  # [-1, K, D]
    x_flat = nodes.add("Reshape", [DATA_INPUT, nodes.const([-1, 1, data_dim])])  # (N, 1, D)
    if manifest.likelihood.type == "bernoulli":
        logits = nodes.add("Reshape", [*decoded, per_sample])  # (N, K, D)
        # log p(x|z) = sum_d x_d l_d - softplus(l_d)
        terms = nodes.add("Sub", [nodes.add("Mul", [x_flat, logits]), nodes.add("Softplus", [logits])])
        log_px_z = nodes.reduce("ReduceSum", terms, axis=2)  # (N, K)
    else:
        mean, logvar = (nodes.add("Reshape", [name, per_sample]) for name in decoded)  # each (N, K, D)
        residual = nodes.add("Sub", [x_flat, mean])
        scaled = nodes.add("Mul", [nodes.add("Mul", [residual, residual]), nodes.add("Exp", [nodes.add("Neg", [logvar])])])
        # log p(x|z) = -0.5 * (D log 2pi + sum_d logvar_d + (x_d - mean_d)^2 exp(-logvar_d))
        total = nodes.reduce("ReduceSum", nodes.add("Add", [logvar, scaled]), axis=2)  # (N, K)
        log_px_z = nodes.add("Mul", [nodes.add("Add", [total, nodes.const(data_dim * LOG_2PI)]),
                                     nodes.const(-0.5)])
    # log p(z) - log q(z|x) = -0.5 sum z^2 + 0.5 sum logvar + 0.5 sum eps^2: the 2 pi terms cancel
    half_logvar = nodes.reduce("ReduceSum", encoded_logvar, axis=1, keepdims=1)  # (N, 1), times 2
    half_eps_sq = nodes.reduce("ReduceSum", nodes.add("Mul", [NOISE_INPUT, NOISE_INPUT]), axis=1)  # (K,), times 2
    if manifest.prior.type == STANDARD_NORMAL:
        half_z_sq = nodes.reduce("ReduceSum", nodes.add("Mul", [z, z]), axis=2)  # (N, K), times 2
        log_ratio = nodes.add("Mul", [nodes.add("Add", [nodes.add("Sub", [half_logvar, half_z_sq]), half_eps_sq]),
                                      nodes.const(0.5)])  # (N, K)
    else:  # the mixture's log p(z), less the same 2 pi terms
        log_q_less_2pi = nodes.add("Mul", [nodes.add("Add", [half_logvar, half_eps_sq]), nodes.const(0.5)])  # (N, K)
        log_prior = _mixture_log_density_less_2pi(nodes, z, prior_for(manifest.prior, manifest.latent_shape))
        log_ratio = nodes.add("Add", [log_prior, log_q_less_2pi])  # (N, K)
    log_w = nodes.add("Add", [log_px_z, log_ratio])  # (N, K)

    nodes.add("Identity", [nodes.log_sum_exp(log_w)], ["log_sum_w"])  # (N,)
    nodes.add("Identity", [nodes.log_sum_exp(nodes.add("Mul", [log_w, nodes.const(2.0)]))], ["log_sum_w2"])
    nodes.add("Identity", [nodes.reduce("ReduceSum", log_w, axis=1)], ["sum_log_w"])

    inputs = [helper.make_tensor_value_info(DATA_INPUT, TensorProto.FLOAT, ["N", *manifest.data_shape]),
              helper.make_tensor_value_info(NOISE_INPUT, TensorProto.FLOAT, ["K", latent_dim])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N"]) for name in OUTPUTS]
    graph = helper.make_graph(
        nodes.nodes, f"{manifest.name}-{manifest.version}-scoring", inputs, outputs,
        initializer=[*encoder.graph.initializer, *decoder.graph.initializer, *nodes.constants],
    )  # no value_info: both graphs call their batch axis by the same names, which here differ (N vs N*K)
    model = helper.make_model(graph, opset_imports=_opset_imports(encoder, decoder, opset),
                              ir_version=max(encoder.ir_version, decoder.ir_version, 8))
    model.functions.extend(_local_functions(encoder, decoder))
    return model


def _mixture_log_density_less_2pi(nodes: "_Nodes", z: str, prior: MixtureOfGaussians) -> str:
    """z (N, K, L) -> log p(z) + L/2 log 2 pi (N, K), as MixtureOfGaussians.log_density_less_2pi computes it:
    log-sum-exp over c of constant_c - 0.5 (z^2 . precision_c - 2 z . mean_c precision_c), no (N, K, C, L) array."""
    squares = nodes.add("MatMul", [nodes.add("Mul", [z, z]), nodes.const(prior.precision.T)])  # (N, K, C)
    cross = nodes.add("MatMul", [z, nodes.const(2.0 * (prior.mean * prior.precision).T)])  # (N, K, C)
    quadratic = nodes.add("Sub", [squares, cross])
    per_component = nodes.add("Sub", [nodes.const(prior.log_constant), nodes.add("Mul", [quadratic, nodes.const(0.5)])])
    return nodes.log_sum_exp(per_component, axis=2)


class _Nodes:
    """Collects nodes and constants with fresh names, spelling reductions as the opset wants them."""

    def __init__(self, opset: int):
        self.opset, self.nodes, self.constants = opset, [], []

    def _name(self, stem: str) -> str:
        return f"scoring/{stem}_{len(self.nodes) + len(self.constants)}"

    def add(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attributes) -> str:
        outputs = outputs or [self._name(op.lower())]
        self.nodes.append(helper.make_node(op, inputs, outputs, **attributes))
        return outputs[0]

    def extend(self, nodes) -> None:
        self.nodes.extend(nodes)

    def const(self, value) -> str:
        array = np.asarray(value, dtype=np.int64 if isinstance(value, list) else np.float32)
        name = self._name("const")
        self.constants.append(numpy_helper.from_array(array, name))
        return name

    def reduce(self, op: str, data: str, axis: int, keepdims: int = 0) -> str:
        """ReduceSum takes axes as an input from opset 13, the other reductions from opset 18."""
        if self.opset >= (13 if op == "ReduceSum" else 18):
            return self.add(op, [data, self.const([axis])], keepdims=keepdims)
        return self.add(op, [data], axes=[axis], keepdims=keepdims)

    def log_sum_exp(self, values: str, axis: int = 1) -> str:
        """(N, K) -> (N,) (or over another axis): max + log sum exp(values - max), safe far from zero."""
        peak = self.reduce("ReduceMax", values, axis=axis, keepdims=1)  # (N, 1)
        total = self.reduce("ReduceSum", self.add("Exp", [self.add("Sub", [values, peak])]), axis=axis)  # (N,)
        return self.add("Add", [self.add("Log", [total]), self.add("Squeeze", [peak, self.const([axis])])])


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _at_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    if _default_opset(model) == opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises several types
        raise FusionError(f"cannot convert a graph from opset {_default_opset(model)} to {opset}: {exc}") from None


def _opset_imports(encoder: onnx.ModelProto, decoder: onnx.ModelProto, opset: int) -> list:
    versions = {"": opset}
    for model in (encoder, decoder):
        for entry in model.opset_import:
            if entry.domain not in ("", "ai.onnx"):
                versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    return [helper.make_opsetid(domain, version) for domain, version in versions.items()]


def _local_functions(encoder: onnx.ModelProto, decoder: onnx.ModelProto) -> list:
    functions = {}
    for function in [*encoder.functions, *decoder.functions]:
        key = (function.domain, function.name, getattr(function, "overload", ""))
        if key in functions and functions[key] != function:
            raise FusionError(f"encoder and decoder define different local functions named {function.name!r}")
        functions[key] = function
    return list(functions.values())
