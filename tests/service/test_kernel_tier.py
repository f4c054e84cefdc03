"""The kernel tier (service.engine.kernels): the MLP pattern read from ONNX graphs, the Triton kernels against
float64 NumPy and closed forms (in Triton's interpreter on a machine without CUDA: VAE_KERNEL_TIER=on asks for
it), the check at load and the fallback with its reason."""

import math
import os
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
    for (weight, bias), value in zip(mlp.heads.values(), expected):
        np.testing.assert_allclose(h @ weight + bias, value, rtol=1e-5, atol=1e-5)


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
    for (weight, bias), value in zip(mlp.heads.values(), expected):
        np.testing.assert_allclose(h @ weight + bias, value, rtol=1e-4, atol=1e-4)


def test_ops_outside_the_pattern_are_refused_with_the_node_that_stopped_it():
    digits = onnx.load(MODELS / "digits" / "1" / "decoder.onnx")  # logvar soft-clamped after the Split
    with pytest.raises(PatternRefused, match=r"\(Sub\) works on part of a layer's output"):
        read_perceptron(digits, "z", ("mean", "logvar"))
    graph = TinyMLP().decoder_graph()
    graph.graph.node[2].op_type = "Selu"
    with pytest.raises(PatternRefused, match="Selu is not an op of the MLP pattern"):
        read_perceptron(graph, "z", ("logits",))
    encoder = TinyMLP().encoder_graph()
    encoder.graph.node[0].attribute.append(helper.make_attribute("transA", 1))
    with pytest.raises(PatternRefused, match="transA"):
        read_perceptron(encoder, "x", ("mu", "logvar"))


# --- the kernels against float64 ------------------------------------------------------------------------------


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
            mlp.heads["logits"][0][0, 0] += 0.5
        return mlp

    monkeypatch.setattr(tier, "read_perceptron", corrupted)
    engine = load(folder, kernel_precision="fp32")
    tier_name, why = served(engine)
    assert tier_name == "onnxruntime" and "nats from the float32 ONNX graphs" in why
    assert engine.describe()["loglik_graph"] == "fused (fp32)"  # ONNX Runtime serves as before


def test_models_outside_the_pattern_fall_back_with_their_reason(tmp_path):
    assert served(load(OneDimensionalBernoulli().write(tmp_path))) == ("triton", None)  # Flatten and Reshape: inside
    tier_name, why = served(load(MODELS / "digits" / "1"))
    assert tier_name == "onnxruntime" and "(Sub)" in why
    assert served(load(MODELS / "digits-binary-discrete" / "1")) == (
        "onnxruntime", "categorical latents: the kernels serve Gaussian latents")
    assert served(load(MODELS / "digits" / "1", kernel_tier="off")) == ("onnxruntime", None)


def test_get_model_says_which_tier_and_precision_serve_it(tmp_path, make_client):
    TinyMLP().write(tmp_path, "tiny")
    LinearGaussian().write(tmp_path, "linear")
    client = make_client(tmp_path, kernel_tier="on", kernel_precision="fp32")
    tiny = client.get("/models/tiny").json()["versions"][0]
    assert (tiny["tier"], tiny["precision"], tiny["loglik_graph"]) == ("triton", "fp32", "triton kernels (fp32)")
    assert "kernel_tier" not in tiny
    x = (np.random.default_rng(0).uniform(size=(2, 6)) < 0.5).astype(int).tolist()
    answer = client.post("/loglik", json={"model": "tiny", "x": x, "k": 20, "seed": 1})
    assert answer.status_code == 200 and np.isfinite(answer.json()["loglik"]).all()
    client_off = make_client(tmp_path, kernel_tier="auto")
    linear = client_off.get("/models/linear").json()["versions"][0]
    assert (linear["tier"], linear["precision"]) == ("onnxruntime", "fp32")
    if not os.path.exists("/dev/nvidiactl"):
        assert linear["kernel_tier"].startswith("no CUDA device")
