"""The kernel tier (service.engine.kernels): the MLP pattern read from ONNX graphs, the Triton kernels against
float64 NumPy and closed forms (in Triton's interpreter on a machine without CUDA: VAE_KERNEL_TIER=on asks for
it), the check at load and the fallback with its reason."""

import math
import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import special

from modelrepo import load_manifest
from modelrepo.likelihood import latent_noise
from service.engine.kernels import pattern, tier
from service.engine.kernels.pattern import PatternRefused, read_perceptron
from service.engine.engine import ModelEngine
from service.engine.options import EngineOptions
from service.engine.sessions import CPU
from tests.service.float64_graphs import Float64Model
from tests.service.handmade import LinearGaussian, LinearGaussianMixture, OneDimensionalBernoulli, write_model

MODELS = Path(__file__).resolve().parents[2] / "models"
ACTIVATIONS = {  # ONNX op, its attributes -> the same function in float64 NumPy
    "Relu": ({}, lambda v: np.maximum(v, 0.0)),
    "LeakyRelu": ({"alpha": 0.2}, lambda v: np.where(v > 0, v, 0.2 * v)),
    "Tanh": ({}, np.tanh),
    "Sigmoid": ({}, lambda v: 1.0 / (1.0 + np.exp(-v))),
    "Softplus": ({}, lambda v: np.logaddexp(0.0, v)),
    "Elu": ({}, lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0.0)))),
}


class TinyMLP:
    """An MLP VAE built by hand: encoder Gemm(transB) -> activation -> Gemm -> Split into mu, logvar; decoder
    MatMul + Add -> activation -> one MatMul + Add per output. Float64 NumPy copies of every weight."""

    def __init__(self, likelihood="bernoulli", activation="Tanh", data_dim=6, latent_dim=2, hidden=8, seed=0):
        rng = np.random.default_rng(seed)
        self.likelihood, self.activation, self.latent_dim = likelihood, activation, latent_dim
        self.data_dim = data_dim
        f32 = lambda *shape, scale=0.5: rng.normal(scale=scale, size=shape).astype(np.float32)  # noqa: E731
        self.enc = [(f32(data_dim, hidden), f32(hidden)), (f32(hidden, 2 * latent_dim, scale=0.3), f32(2 * latent_dim, scale=0.2))]
        outputs = ("logits",) if likelihood == "bernoulli" else ("mean", "logvar")
        self.dec_hidden = (f32(latent_dim, hidden), f32(hidden))
        self.dec_heads = {name: (f32(hidden, data_dim), f32(data_dim, scale=0.2)) for name in outputs}

    def encoder_graph(self) -> onnx.ModelProto:
        (w1, b1), (w2, b2) = self.enc
        attributes = ACTIVATIONS[self.activation][0]
        nodes = [helper.make_node("Gemm", ["x", "W1t", "b1"], ["g1"], transB=1),
                 helper.make_node(self.activation, ["g1"], ["h1"], **attributes),
                 helper.make_node("Gemm", ["h1", "W2", "b2"], ["g2"]),
                 helper.make_node("Split", ["g2", "sizes"], ["mu", "logvar"], axis=1)]
        inits = [numpy_helper.from_array(w1.T.copy(), "W1t"), numpy_helper.from_array(b1, "b1"),
                 numpy_helper.from_array(w2, "W2"), numpy_helper.from_array(b2, "b2"),
                 numpy_helper.from_array(np.array([self.latent_dim] * 2, np.int64), "sizes")]
        return _model(nodes, inits, "x", self.data_dim, {"mu": self.latent_dim, "logvar": self.latent_dim})

    def decoder_graph(self) -> onnx.ModelProto:
        w, b = self.dec_hidden
        nodes = [helper.make_node("MatMul", ["z", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
                 helper.make_node(self.activation, ["a"], ["h"], **ACTIVATIONS[self.activation][0])]
        inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")]
        for name, (wo, bo) in self.dec_heads.items():
            nodes += [helper.make_node("MatMul", ["h", f"W_{name}"], [f"m_{name}"]),
                      helper.make_node("Add", [f"m_{name}", f"b_{name}"], [name])]
            inits += [numpy_helper.from_array(wo, f"W_{name}"), numpy_helper.from_array(bo, f"b_{name}")]
        return _model(nodes, inits, "z", self.latent_dim, {name: self.data_dim for name in self.dec_heads})

    def write(self, root: Path, name: str = "tiny", **extra) -> Path:
        return write_model(root, name, 1, (self.data_dim,), self.latent_dim, self.likelihood, self.encoder_graph(),
                           self.decoder_graph(), **extra)

    def reference_loglik(self, x: np.ndarray, eps: np.ndarray, log_prior) -> tuple[np.ndarray, np.ndarray]:
        """loglik and elbo in float64 from this model's own weights: x (N, D), eps (K, L) -> each (N,)."""
        act = ACTIVATIONS[self.activation][1]
        x = x.astype(np.float64)
        (w1, b1), (w2, b2) = ((w.astype(np.float64), b.astype(np.float64)) for w, b in self.enc)
        out = act(x @ w1 + b1) @ w2 + b2
        mu, logvar = out[:, : self.latent_dim], out[:, self.latent_dim :]  # (N, L)
        z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps[None]  # (N, K, L)
        h = act(z @ self.dec_hidden[0].astype(np.float64) + self.dec_hidden[1])  # (N, K, H)
        heads = {name: h @ w.astype(np.float64) + b for name, (w, b) in self.dec_heads.items()}  # (N, K, D)
        if self.likelihood == "bernoulli":
            log_px_z = (x[:, None] * heads["logits"] - np.logaddexp(0.0, heads["logits"])).sum(-1)
        else:
            mean, lv = heads["mean"], heads["logvar"]
            log_px_z = -0.5 * (math.log(2 * math.pi) + lv + (x[:, None] - mean) ** 2 * np.exp(-lv)).sum(-1)
        log_q = -0.5 * (math.log(2 * math.pi) + logvar[:, None] + eps[None] ** 2).sum(-1)  # (N, K)
        log_w = log_px_z + log_prior(z) - log_q
        return special.logsumexp(log_w, axis=1) - math.log(eps.shape[0]), log_w.mean(1)


def _model(nodes, inits, input_name, width, outputs: dict[str, int]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", w]) for n, w in outputs.items()],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def standard_normal(z):
    return -0.5 * (math.log(2 * math.pi) + z**2).sum(-1)


def mixture(logits, mean, logvar):
    def log_density(z):  # z (..., L) -> log sum_c pi_c N(z; mean_c, diag exp(logvar_c)), term by term
        per_component = [special.log_softmax(logits)[c] - 0.5 * (math.log(2 * math.pi) + logvar[c]
                         + (z - mean[c]) ** 2 * np.exp(-logvar[c])).sum(-1) for c in range(len(logits))]
        return special.logsumexp(per_component, axis=0)
    return log_density


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch):
    """The kernels run in Triton's interpreter, on the CPU whatever the machine: a mode of the whole process, which
    VAE_KERNEL_TIER=on turns on without CUDA (TRITON_INTERPRET=1); here it is set for each test only."""
    monkeypatch.setenv("TRITON_INTERPRET", os.environ.get("TRITON_INTERPRET", "1"))


def load(folder: Path, **options) -> ModelEngine:
    return ModelEngine.open(folder, EngineOptions([CPU], **{"kernel_tier": "on", **options}))


def served(engine: ModelEngine) -> tuple[str, str | None]:
    """(the tier that serves the version's /loglik, why the kernel tier does not), as GET /models shows them."""
    report = engine.describe()
    return report["tier"], report.get("kernel_tier")


# --- the pattern ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_each_activation_is_read_and_computes_what_onnx_runtime_computes(activation):
    model = TinyMLP(activation=activation)
    graph = model.encoder_graph()
    mlp = read_perceptron(graph, "x", ("mu", "logvar"))
    assert [layer.activation for layer in mlp.hidden] == [pattern.ACTIVATIONS[activation][0]]
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    h = x.astype(np.float64)
    for layer in mlp.hidden:
        h = ACTIVATIONS[activation][1](h @ layer.weight + layer.bias)
    expected = ort.InferenceSession(graph.SerializeToString(), providers=[CPU]).run(None, {"x": x})
    for head, value in zip(mlp.heads.values(), expected):
        np.testing.assert_allclose(h @ head.weight + head.bias, value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["digits-binary", "digits"])
def test_exported_encoders_are_read_exactly(name):
    """training/'s export: Gemm with transB, Elu or Relu, and Split into mu and logvar."""
    folder = MODELS / name / "1"
    graph = onnx.load(folder / "encoder.onnx")
    mlp = read_perceptron(graph, "x", ("mu", "logvar"))
    x = np.random.default_rng(2).uniform(size=(4, 64)).astype(np.float32)
    h = x.astype(np.float64)
    functions = {"relu": ACTIVATIONS["Relu"][1], "elu": ACTIVATIONS["Elu"][1]}
    for layer in mlp.hidden:
        h = functions[layer.activation](h @ layer.weight + layer.bias)
    expected = ort.InferenceSession(graph.SerializeToString(), providers=[CPU]).run(None, {"x": x})
    for head, value in zip(mlp.heads.values(), expected):
        assert head.tail == ()
        np.testing.assert_allclose(h @ head.weight + head.bias, value, rtol=1e-4, atol=1e-4)


TAILS = {  # name -> the nodes after the logvar head's MatMul + Add (input "raw", output "logvar"), in float64 NumPy
    # training/model.py's soft clamp floor + softplus(raw - floor) as torch.onnx exports it (floor -2 here)
    "soft clamp": ([helper.make_node("Sub", ["raw", "floor"], ["shifted"]),
                    helper.make_node("Softplus", ["shifted"], ["soft"]),
                    helper.make_node("Greater", ["shifted", "threshold"], ["above"]),
                    helper.make_node("Where", ["above", "shifted", "soft"], ["clamped"]),
                    helper.make_node("Add", ["clamped", "floor"], ["logvar"])],
                   lambda v: -2.0 + np.where(v + 2.0 > 1.0, v + 2.0, np.logaddexp(0.0, v + 2.0))),
    "clip, scale": ([helper.make_node("Clip", ["raw", "low", "high"], ["clipped"]),
                     helper.make_node("Mul", ["clipped", "half"], ["logvar"])], lambda v: 0.5 * np.clip(v, -1.0, 0.5)),
    "tanh, max, min": ([helper.make_node("Div", ["raw", "two"], ["halved"]),
                        helper.make_node("Tanh", ["halved"], ["squashed"]),
                        helper.make_node("Max", ["squashed", "low"], ["floored"]),
                        helper.make_node("Min", ["floored", "high"], ["logvar"])],
                       lambda v: np.minimum(np.maximum(np.tanh(v / 2.0), -1.0), 0.5)),
    "neg, sigmoid, from a constant": ([helper.make_node("Neg", ["raw"], ["negated"]),
                                       helper.make_node("Sigmoid", ["negated"], ["squashed"]),
                                       helper.make_node("Sub", ["half", "squashed"], ["logvar"])],
                                      lambda v: 0.5 - 1.0 / (1.0 + np.exp(v))),
}
TAIL_CONSTANTS = {"floor": -2.0, "threshold": 1.0, "low": -1.0, "high": 0.5, "half": 0.5, "two": 2.0}


def with_tail(model: "TinyMLP", nodes: list) -> onnx.ModelProto:
    """model's Gaussian decoder with `nodes` between its logvar head ("raw") and the output "logvar"."""
    graph = model.decoder_graph()
    for node in graph.graph.node:
        node.output[:] = ["raw" if name == "logvar" else name for name in node.output]
    graph.graph.node.extend(nodes)
    graph.graph.initializer.extend(numpy_helper.from_array(np.array(value, np.float32), name)
                                   for name, value in TAIL_CONSTANTS.items())
    return graph


@pytest.mark.parametrize("tail", list(TAILS))
def test_elementwise_tails_after_the_last_layer_are_read_and_compute_what_onnx_runtime_computes(tail):
    model = TinyMLP("gaussian", "Relu")
    graph = with_tail(model, TAILS[tail][0])
    mlp = read_perceptron(graph, "z", ("mean", "logvar"))
    assert mlp.heads["mean"].tail == () and 1 <= len(mlp.heads["logvar"].tail) <= pattern.MAX_TAIL
    z = np.random.default_rng(3).normal(scale=2.0, size=(50, 2)).astype(np.float32)
    mean, logvar = ort.InferenceSession(graph.SerializeToString(), providers=[CPU]).run(None, {"z": z})
    w, b = (a.astype(np.float64) for a in model.dec_hidden)
    h = np.maximum(z @ w + b, 0.0)
    raw = h @ model.dec_heads["logvar"][0].astype(np.float64) + model.dec_heads["logvar"][1]
    np.testing.assert_allclose(TAILS[tail][1](raw), logvar, atol=2e-6)
    assert (raw + 2.0 > 1.0).any() and (raw + 2.0 < 1.0).any()  # both sides of the softplus threshold are seen


def test_tails_on_the_encoder_and_the_decoder_are_served_near_float64(tmp_path):
    """The encoder's logvar soft-clamped (applied to its N rows in float64), the decoder's clipped and scaled
    (applied on chip): the tier against both graphs widened to float64 (onnx.reference)."""
    model = TinyMLP("gaussian", "Tanh")
    encoder = model.encoder_graph()
    encoder.graph.node[3].output[1] = "raw"
    encoder.graph.node.extend(TAILS["soft clamp"][0])
    encoder.graph.initializer.extend(numpy_helper.from_array(np.array(value, np.float32), name)
                                     for name, value in TAIL_CONSTANTS.items())
    folder = write_model(tmp_path, "tails", 1, (6,), 2, "gaussian", encoder, with_tail(model, TAILS["clip, scale"][0]))
    engine = load(folder, kernel_precision="fp32")
    assert served(engine) == ("triton", None)
    x = np.random.default_rng(6).normal(size=(5, 6)).astype(np.float32)
    loglik, elbo = Float64Model(folder).loglik(x, 40, 2)
    estimate = engine.loglik(x, 40, 2)
    np.testing.assert_allclose(estimate["loglik"], loglik, atol=2e-4)
    np.testing.assert_allclose(estimate["elbo"], elbo, atol=2e-4)


def test_shipped_gaussian_decoders_soft_clamp_their_log_variance_as_a_tail():
    """training/'s min_logvar floor (-9): floor + softplus(raw - floor); the Sub folds into the bias."""
    digits = read_perceptron(onnx.load(MODELS / "digits" / "1" / "decoder.onnx"), "z", ("mean", "logvar"))
    assert digits.heads["mean"].tail == ()
    assert digits.heads["logvar"].tail == (("softplus_above", 20.0), ("add", -9.0))


def test_ops_outside_the_pattern_are_refused_with_the_node_that_stopped_it():
    model = TinyMLP("gaussian", "Relu")
    graph = model.decoder_graph()
    graph.graph.node[2].op_type = "Selu"
    with pytest.raises(PatternRefused, match="Selu is not an op of the MLP pattern"):
        read_perceptron(graph, "z", ("mean", "logvar"))
    encoder = TinyMLP().encoder_graph()
    encoder.graph.node[0].attribute.append(helper.make_attribute("transA", 1))
    with pytest.raises(PatternRefused, match="transA"):
        read_perceptron(encoder, "x", ("mu", "logvar"))
    refusals = {  # a tail the kernels cannot apply -> what the refusal says
        "a per-column constant after a nonlinear step": [helper.make_node("Tanh", ["raw"], ["t"]),
                                                         helper.make_node("Add", ["t", "column"], ["logvar"])],
        "a tail of 4 elementwise steps": [helper.make_node("Tanh", ["raw"], ["t1"]),
                                          helper.make_node("Sigmoid", ["t1"], ["t2"]),
                                          helper.make_node("Tanh", ["t2"], ["t3"]),
                                          helper.make_node("Mul", ["t3", "two"], ["logvar"])],
        r"is not Where\(Greater\(v, t\), v, Softplus\(v\)\)": [
            helper.make_node("Greater", ["raw", "threshold"], ["above"]), helper.make_node("Tanh", ["raw"], ["t"]),
            helper.make_node("Where", ["above", "raw", "t"], ["logvar"])],
        "divides a constant by a tensor": [helper.make_node("Div", ["two", "raw"], ["logvar"])],
        "reads 2 tensors computed from the input": [helper.make_node("Mul", ["raw", "raw"], ["logvar"])],
    }
    for reason, nodes in refusals.items():
        graph = with_tail(model, nodes)
        graph.graph.initializer.append(numpy_helper.from_array(np.arange(6, dtype=np.float32), "column"))
        with pytest.raises(PatternRefused, match=reason):
            read_perceptron(graph, "z", ("mean", "logvar"))
    hidden_tail = model.decoder_graph()  # a tail between two layers: the next MatMul refuses it
    hidden_tail.graph.node.insert(3, helper.make_node("Mul", ["h0", "two"], ["h"]))
    hidden_tail.graph.node[2].output[0] = "h0"
    hidden_tail.graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    with pytest.raises(PatternRefused, match=r"follows an elementwise tail \(mul\)"):
        read_perceptron(hidden_tail, "z", ("mean", "logvar"))


# --- the kernels against float64 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("likelihood", "hidden"), [("gaussian", (40, 100)), ("bernoulli", (40, 100)),
                                                  ("gaussian", (24,)), ("bernoulli", (130, 17))])
def test_the_one_kernel_decoder_matches_float64_and_the_layer_by_layer_kernels(likelihood, hidden):
    """z = mu + std eps inside the kernel, h1 kept whole on chip, h2 made 64 columns at a time (100: two blocks,
    one partial), the soft-clamped log-variance tail; widths off the powers of two, so every mask is exercised."""
    import torch

    _, kernels = tier._device_and_kernels("on")
    rng = np.random.default_rng(11)
    points, samples, latent, data = 3, 5, 3, 20
    widths = (latent, *hidden)
    layers = [(rng.normal(scale=0.6, size=(a, b)), rng.normal(scale=0.3, size=b), act, 0.0)
              for (a, b), act in zip(zip(widths[:-1], widths[1:]), ("elu", "relu"))]
    tails = ((("tanh", 0.0),), (("softplus_above", 1.0), ("add", -2.0)))[: 2 if likelihood == "gaussian" else 1]
    heads = [(rng.normal(scale=0.3, size=(hidden[-1], data)), rng.normal(scale=0.3, size=data), tail)
             for tail in tails]
    mu, std = rng.normal(size=(points, latent)), np.exp(rng.normal(scale=0.3, size=(points, latent)))
    eps = rng.normal(size=(samples, latent))
    x = rng.normal(size=(points, data)) if likelihood == "gaussian" else (rng.uniform(size=(points, data)) < 0.5) * 1.0

    h = (mu[:, None] + std[:, None] * eps[None]).reshape(-1, latent)  # float64, sample s of point s // samples
    for w, b, act, _ in layers:
        h = h @ w + b
        h = np.maximum(h, 0.0) if act == "relu" else np.where(h > 0, h, np.expm1(np.minimum(h, 0.0)))
    steps = {"tanh": lambda v, a: np.tanh(v), "add": lambda v, a: v + a,
             "softplus_above": lambda v, a: np.where(v > a, v, np.logaddexp(0.0, v))}
    values = []
    for w, b, tail in heads:
        v = h @ w + b
        for step, number in tail:
            v = steps[step](v, number)
        values.append(v)
    xs = np.repeat(x, samples, axis=0)
    if likelihood == "gaussian":
        expected = (values[1] + (xs - values[0]) ** 2 * np.exp(-values[1])).sum(1)
    else:
        expected = (xs * values[0] - np.logaddexp(0.0, values[0])).sum(1)

    as32 = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
    f32_layers = [(as32(w), as32(b), act, alpha) for w, b, act, alpha in layers]
    f32_heads = [(as32(w), as32(b), tail) for w, b, tail in heads]
    fused = kernels.decoder(as32(mu), as32(std), as32(eps), f32_layers, f32_heads, as32(x)).numpy()
    np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=2e-4)
    h32 = as32((mu[:, None] + std[:, None] * eps[None]).reshape(-1, latent))  # the same z, through memory
    for w, b, act, alpha in f32_layers:
        h32 = kernels.linear(h32, w, b, act, alpha, torch.float32)
    layered = kernels.likelihood(h32, f32_heads, as32(x), samples).numpy()
    np.testing.assert_allclose(fused, layered, rtol=1e-5, atol=2e-4)
    half_layers = [f32_layers[0], *((w.half(), b, act, alpha) for w, b, act, alpha in f32_layers[1:])]
    half = kernels.decoder(as32(mu), as32(std), as32(eps), half_layers, [(w.half(), b, t) for w, b, t in f32_heads],
                           as32(x)).numpy()
    assert 0 < np.abs(half - expected).max() < 0.05 * np.abs(expected).max()  # rounded to fp16, not far
    assert kernels.fits_on_chip(list(hidden), data) and not kernels.fits_on_chip([500, 500], 784)
    assert set(pattern.STEPS) <= set(kernels.STEP_CODES) and pattern.MAX_TAIL == kernels.TAIL_SLOTS  # every step read


@pytest.mark.parametrize(("likelihood", "prior", "activation"), [
    ("bernoulli", "standard_normal", "Relu"), ("gaussian", "standard_normal", "Tanh"),
    ("bernoulli", "mixture", "Softplus"), ("gaussian", "mixture", "Elu")])
def test_kernels_in_float32_match_a_float64_reference(tmp_path, likelihood, prior, activation):
    model = TinyMLP(likelihood, activation)
    logits, mean, logvar = np.array([0.3, -0.2]), np.array([[0.5, -0.5], [-1.0, 0.8]]), np.array([[-0.5, 0.2], [0.1, -0.3]])
    extra = {"prior": {"type": "mixture_of_gaussians", "logits": logits.tolist(), "mean": mean.tolist(),
                       "logvar": logvar.tolist()}} if prior == "mixture" else {}
    engine = load(model.write(tmp_path, **extra), kernel_precision="fp32")
    assert served(engine) == ("triton", None)
    rng = np.random.default_rng(4)
    x = (rng.uniform(size=(5, 6)) < 0.4) if likelihood == "bernoulli" else rng.normal(size=(5, 6))
    x = x.astype(np.float32)
    loglik, elbo = model.reference_loglik(x, latent_noise(9, 40, 2), mixture(logits, mean, logvar)
                                          if prior == "mixture" else standard_normal)
    estimate = engine.loglik(x, 40, 9)
    np.testing.assert_allclose(estimate["loglik"], loglik, atol=2e-4)
    np.testing.assert_allclose(estimate["elbo"], elbo, atol=2e-4)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_stays_near_the_float64_reference(tmp_path, precision):
    model = TinyMLP("bernoulli", "Relu")
    engine = load(model.write(tmp_path), kernel_precision=precision, kernel_tolerance_nats=0.05)
    assert served(engine) == ("triton", None) and engine.describe()["precision"] == precision
    x = (np.random.default_rng(5).uniform(size=(4, 6)) < 0.5).astype(np.float32)
    loglik, _ = model.reference_loglik(x, latent_noise(1, 30, 2), standard_normal)
    difference = np.abs(engine.loglik(x, 30, 1)["loglik"] - loglik).max()
    assert 0 < difference < (0.01 if precision == "fp16" else 0.05)  # rounded, but not far


def test_the_exact_posterior_model_gives_its_closed_form_log_likelihood(tmp_path):
    """LinearGaussian: separate mean and logvar heads; with the exact posterior every weight is p(x), any k."""
    model = LinearGaussian()
    engine = load(model.write(tmp_path), kernel_precision="fp32")
    assert served(engine) == ("triton", None)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(engine.loglik(x, 7, 3)["loglik"], model.exact_loglik(x), atol=2e-4)


# --- the check at load, the fallback, GET /models -----------------------------------------------------------


def test_a_tier_that_disagrees_with_the_graphs_is_not_served(tmp_path, monkeypatch):
    folder = TinyMLP().write(tmp_path)
    tier_name, why = served(load(folder, kernel_precision="fp32", kernel_tolerance_nats=0.0))
    assert tier_name == "onnxruntime" and why.startswith("verification failed")

    original = tier.read_perceptron

    def corrupted(model, input_name, outputs):  # one decoder weight off by 0.5
        mlp = original(model, input_name, outputs)
        if input_name == "z":
            mlp.heads["logits"].weight[0, 0] += 0.5
        return mlp

    monkeypatch.setattr(tier, "read_perceptron", corrupted)
    engine = load(folder, kernel_precision="fp32")
    tier_name, why = served(engine)
    assert tier_name == "onnxruntime" and "nats from the float32 ONNX graphs" in why
    assert engine.describe()["loglik_graph"] == "fused (fp32)"  # ONNX Runtime serves as before


def test_models_outside_the_pattern_fall_back_with_their_reason(tmp_path):
    assert served(load(OneDimensionalBernoulli().write(tmp_path))) == ("triton", None)  # Flatten and Reshape: inside
    model = TinyMLP("gaussian", "Relu")
    folder = model.write(tmp_path, "clamped")
    (folder / "decoder.onnx").write_bytes(with_tail(model, [helper.make_node("Mul", ["raw", "raw"], ["logvar"])])
                                          .SerializeToString())
    tier_name, why = served(load(folder))
    assert tier_name == "onnxruntime" and "(Mul) reads 2 tensors" in why
    assert served(load(MODELS / "digits-binary-discrete" / "1")) == (
        "onnxruntime", "categorical latents: the kernels serve Gaussian latents")
    assert served(load(MODELS / "digits" / "1", kernel_tier="off")) == ("onnxruntime", None)


# VAE_KERNEL_PRECISION=auto's choice on each shipped factorised model, from bench/kernel_precision.py's table
# (docs/BENCHMARKS.md): fp16 where its rounding stays within the check, fp16 with the last layer in fp32 where
# only the likelihood's parameters need it, fp32 elsewhere: the Gaussian decoders (a log-variance near its floor
# of -9 multiplies the mean's rounding by e^9) and mnist's 500-wide layers (fp16 5e-3 to 7e-3 nats off)
SHIPPED = {"digits": "fp32", "digits-mog": "fp32", "digits-binary": "fp16-last-fp32",
           "digits-binary-ratio": "fp16-last-fp32", "digits-binary-background": "fp16",
           "mnist-binary": "fp32", "mnist-binary-background": "fp32", "mnist-binary-ratio": "fp32"}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_every_shipped_factorised_model_is_served_by_the_tier_near_float64(name):
    """Served with its check at load passed, in the precision the default rule picks; its answers near float64
    (both graphs widened, onnx.reference) and the float32 graphs (ONNX Runtime) on points drawn from the model."""
    folder = MODELS / name / "1"
    engine = load(folder)
    assert served(engine) == ("triton", None) and engine.describe()["precision"] == SHIPPED[name]
    reference = Float64Model(folder)
    x = tier.verification_points(engine.decode, reference.prior, reference.likelihood)[:4]
    exact, exact_elbo = reference.loglik(x, 16, 5)
    ours = engine.loglik(x, 16, 5)
    graphs = load(folder, kernel_tier="off").loglik(x, 16, 5)
    tolerance = EngineOptions([CPU]).kernel_tolerance_nats
    assert np.abs(ours["loglik"] - exact).max() <= tolerance
    assert np.abs(ours["elbo"] - exact_elbo).max() <= 4 * tolerance
    assert np.abs(ours["loglik"] - graphs["loglik"]).max() <= tolerance
    assert np.abs(graphs["loglik"] - exact).max() < 1e-4  # the yardstick agrees with ONNX Runtime's float32


def test_auto_precision_says_what_each_precision_missed_by(tmp_path):
    tier_name, why = served(load(MODELS / "digits" / "1", kernel_tolerance_nats=1e-7))
    assert tier_name == "onnxruntime"
    assert re.fullmatch(r"verification failed: \S+ in fp16, \S+ in fp16-last-fp32, \S+ in fp32 nats from the "
                        r"float32 ONNX graphs on 16 points drawn from the model \(VAE_KERNEL_TOLERANCE_NATS=1e-07\)",
                        why), why
    engine = load(MODELS / "digits" / "1", kernel_precision="fp16", kernel_tolerance_nats=1.0)
    assert served(engine) == ("triton", None) and engine.describe()["precision"] == "fp16"  # asked by name: as asked


def test_a_one_kernel_decoder_that_fails_goes_layer_by_layer(tmp_path, monkeypatch):
    """Its limits are not yet measured on a GPU: a compile or launch failure there costs the layout, not the tier."""
    _, kernels = tier._device_and_kernels("on")

    def too_big(*args):
        raise RuntimeError("out of resources: shared memory")

    monkeypatch.setattr(kernels, "decoder", too_big)
    engine = load(TinyMLP().write(tmp_path), kernel_precision="fp32")
    assert served(engine) == ("triton", None)
    assert engine.describe()["loglik_graph"] == "triton kernels (fp32, layer by layer)"
    assert engine.cache_identity.endswith("triton-fp32-layered/cpu")


def test_get_model_says_which_tier_and_precision_serve_it(tmp_path, make_client):
    TinyMLP().write(tmp_path, "tiny")
    LinearGaussian().write(tmp_path, "linear")
    client = make_client(tmp_path, kernel_tier="on", kernel_precision="fp32")
    tiny = client.get("/models/tiny").json()["versions"][0]
    assert (tiny["tier"], tiny["precision"]) == ("triton", "fp32")
    assert tiny["loglik_graph"] == "triton kernels (fp32, one kernel)"
    assert "kernel_tier" not in tiny
    x = (np.random.default_rng(0).uniform(size=(2, 6)) < 0.5).astype(int).tolist()
    answer = client.post("/loglik", json={"model": "tiny", "x": x, "k": 20, "seed": 1})
    assert answer.status_code == 200 and np.isfinite(answer.json()["loglik"]).all()
    client_off = make_client(tmp_path, kernel_tier="auto")
    linear = client_off.get("/models/linear").json()["versions"][0]
    assert (linear["tier"], linear["precision"]) == ("onnxruntime", "fp32")
    if not os.path.exists("/dev/nvidiactl"):
        assert linear["kernel_tier"].startswith("no CUDA device")
