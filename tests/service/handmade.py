"""Models built by hand with onnx.helper, as a user who never saw training/ would build them."""

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def affine_graph(input_name: str, input_tail: tuple[int, ...], outputs: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, ...]]]) -> onnx.ModelProto:
    """input [batch, *input_tail] -> for each name: flatten(input) @ W + b, reshaped to [batch, *tail]."""
    nodes = [helper.make_node("Flatten", [input_name], ["flat"], axis=1)]
    inits, values = [], []
    for name, (weight, bias, tail) in outputs.items():
        inits += [numpy_helper.from_array(weight.astype(np.float32), f"W_{name}"),
                  numpy_helper.from_array(bias.astype(np.float32), f"b_{name}")]
        nodes += [helper.make_node("MatMul", ["flat", f"W_{name}"], [f"mm_{name}"])]
        if len(tail) == 1:
            nodes.append(helper.make_node("Add", [f"mm_{name}", f"b_{name}"], [name]))
        else:
            inits.append(numpy_helper.from_array(np.array([-1, *tail], dtype=np.int64), f"shape_{name}"))
            nodes += [helper.make_node("Add", [f"mm_{name}", f"b_{name}"], [f"pre_{name}"]),
                      helper.make_node("Reshape", [f"pre_{name}", f"shape_{name}"], [name])]
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *tail]))
    graph = helper.make_graph(nodes, "handmade",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", *input_tail])],
                              values, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def write_model(root: Path, name: str, version: int, data_shape: tuple[int, ...], latent_dim: int, likelihood: str,
                encoder: onnx.ModelProto, decoder: onnx.ModelProto, **extra) -> Path:
    folder = Path(root) / name / str(version)
    folder.mkdir(parents=True)
    onnx.save(encoder, str(folder / "encoder.onnx"))
    onnx.save(decoder, str(folder / "decoder.onnx"))
    manifest = {"format": "vae-onnx/1", "name": name, "version": version, "data_shape": list(data_shape),
                "latent_dim": latent_dim, "likelihood": {"type": likelihood}, "prior": {"type": "standard_normal"},
                "encoder": "encoder.onnx", "decoder": "decoder.onnx", **extra}
    manifest = {key: value for key, value in manifest.items() if value is not None}  # prior=None: no prior key
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


class LinearGaussian:
    """x = W z + b + N(0, s2 I) with the exact posterior as encoder: log p(x) = log N(x; b, W W^T + s2 I)."""

    def __init__(self, data_dim=5, latent_dim=3, noise_var=0.3, seed=7, proposal_shift=0.0, proposal_widen=1.0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((data_dim, latent_dim)))
        self.weight = q * np.linspace(2.0, 0.5, latent_dim)  # (D, L), orthogonal columns
        self.bias = rng.standard_normal(data_dim)
        self.noise_var = noise_var
        posterior_var = 1.0 / (1.0 + (self.weight**2).sum(0) / noise_var)  # (L,)
        self.encoder_matrix = posterior_var[:, None] * self.weight.T / noise_var  # (L, D)
        self.encoder_offset = -self.encoder_matrix @ self.bias + proposal_shift  # (L,)
        self.proposal_logvar = np.log(posterior_var * proposal_widen)  # (L,)
        self.encoder = affine_graph("x", (data_dim,), {
            "mu": (self.encoder_matrix.T, self.encoder_offset, (latent_dim,)),
            "logvar": (np.zeros((data_dim, latent_dim)), self.proposal_logvar, (latent_dim,)),
        })
        self.decoder = affine_graph("z", (latent_dim,), {
            "mean": (self.weight.T, self.bias, (data_dim,)),
            "logvar": (np.zeros((latent_dim, data_dim)), np.full(data_dim, math.log(noise_var)), (data_dim,)),
        })
        self.data_dim, self.latent_dim = data_dim, latent_dim

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The encoder graph's function in float64 NumPy: x (N, D) -> mu, logvar (N, L)."""
        mu = x @ self.encoder_matrix.T + self.encoder_offset
        return mu, np.broadcast_to(self.proposal_logvar, mu.shape)

    def decode(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """The decoder graph's function in float64 NumPy: z (M, L) -> mean, logvar (M, D)."""
        mean = z.astype(np.float64) @ self.weight.T + self.bias
        return {"mean": mean, "logvar": np.full_like(mean, math.log(self.noise_var))}

    def exact_loglik(self, x: np.ndarray) -> np.ndarray:
        from scipy import stats

        covariance = self.weight @ self.weight.T + self.noise_var * np.eye(self.data_dim)
        return stats.multivariate_normal(self.bias, covariance).logpdf(x)

    def write(self, root: Path, name: str = "linear", version: int = 1) -> Path:
        return write_model(root, name, version, (self.data_dim,), self.latent_dim, "gaussian", self.encoder, self.decoder)


class OneDimensionalBernoulli:
    """logits = a z + c over data_shape [1, 2, 3]; proposal N(0.2, 1.5^2) for every x."""

    data_shape = (1, 2, 3)

    def __init__(self, seed=3):
        rng = np.random.default_rng(seed)
        self.slope, self.offset = rng.normal(scale=1.0, size=6), rng.normal(size=6)
        self.encoder = affine_graph("x", self.data_shape, {
            "mu": (np.zeros((6, 1)), np.array([0.2]), (1,)),
            "logvar": (np.zeros((6, 1)), np.array([math.log(1.5**2)]), (1,)),
        })
        self.decoder = affine_graph("z", (1,), {"logits": (self.slope[None], self.offset, self.data_shape)})

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The encoder graph's function in NumPy: x (N, 1, 2, 3) -> mu, logvar (N, 1), whatever x is."""
        return np.full((len(x), 1), 0.2), np.full((len(x), 1), math.log(1.5**2))

    def decode(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """The decoder graph's function in float64 NumPy: z (M, 1) -> logits (M, 1, 2, 3)."""
        return {"logits": (z.astype(np.float64) * self.slope + self.offset).reshape(len(z), *self.data_shape)}

    def exact_loglik(self, x: np.ndarray) -> np.ndarray:
        """By adaptive quadrature over z, in float64."""
        from scipy import integrate, stats

        def joint(z: float, row: np.ndarray) -> float:
            logits = self.slope * z + self.offset
            return math.exp((row * logits - np.logaddexp(0, logits)).sum() + stats.norm.logpdf(z))

        rows = x.reshape(len(x), -1)
        return np.array([math.log(integrate.quad(joint, -12, 12, args=(r,), epsabs=1e-14, limit=200)[0]) for r in rows])

    def write(self, root: Path, name: str = "bern1d", version: int = 1) -> Path:
        return write_model(root, name, version, self.data_shape, 1, "bernoulli", self.encoder, self.decoder)


class LinearGaussianMixture(LinearGaussian):
    """LinearGaussian's decoder under a mixture-of-Gaussians prior p(z) = sum_c pi_c N(m_c, S_c), S_c diagonal:
    log p(x) = log sum_c pi_c N(x; W m_c + b, W S_c W^T + s2 I). The encoder is the standard-normal model's
    posterior, widened: a proposal, not the posterior (which is a mixture)."""

    def __init__(self, logits=(0.4, -0.5, 0.1), mean=None, logvar=None, proposal_widen=3.0, seed=7):
        super().__init__(proposal_widen=proposal_widen, seed=seed)
        rng = np.random.default_rng(seed + 1)
        components = len(logits)
        self.logits = np.asarray(logits, np.float64)
        self.mean = rng.normal(scale=0.8, size=(components, self.latent_dim)) if mean is None else np.asarray(mean)
        self.logvar = (rng.uniform(-1.0, 0.5, size=(components, self.latent_dim)) if logvar is None
                       else np.asarray(logvar))

    @property
    def prior(self) -> dict:
        return {"type": "mixture_of_gaussians", "logits": self.logits.tolist(), "mean": self.mean.tolist(),
                "logvar": self.logvar.tolist()}

    def exact_loglik(self, x: np.ndarray) -> np.ndarray:
        from scipy import special, stats

        log_weights = special.log_softmax(self.logits)
        per_component = [
            log_weights[c] + stats.multivariate_normal(
                self.weight @ self.mean[c] + self.bias,
                self.weight @ np.diag(np.exp(self.logvar[c])) @ self.weight.T + self.noise_var * np.eye(self.data_dim),
            ).logpdf(x)
            for c in range(len(self.logits))
        ]
        return special.logsumexp(per_component, axis=0)

    def write(self, root: Path, name: str = "mog", version: int = 1) -> Path:
        return write_model(root, name, version, (self.data_dim,), self.latent_dim, "gaussian", self.encoder,
                           self.decoder, prior=self.prior)


class SmallCategorical:
    """G = 2 groups of C = 3 categories, a Bernoulli decoder over 4 values: logits = flat(z) V + c; the encoder's
    logits [G, C] = x A + a. Its log p(x) is a sum of C^G = 9 terms, computed here by brute force in float64."""

    groups, categories, data_dim = 2, 3, 4

    def __init__(self, prior_logits=None, seed=5):
        rng = np.random.default_rng(seed)
        width = self.groups * self.categories
        self.encoder_weight, self.encoder_bias = rng.normal(size=(self.data_dim, width)), rng.normal(size=width)
        self.decoder_weight = rng.normal(scale=2.0, size=(width, self.data_dim))
        self.decoder_bias = rng.normal(size=self.data_dim)
        self.prior_logits = None if prior_logits is None else np.asarray(prior_logits, np.float64)  # None: uniform
        shape = (self.groups, self.categories)
        self.encoder = affine_graph("x", (self.data_dim,), {"logits": (self.encoder_weight, self.encoder_bias, shape)})
        self.decoder = affine_graph("z", shape, {"logits": (self.decoder_weight, self.decoder_bias, (self.data_dim,))})

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x (N, D) -> the encoder's logits (N, G, C) in float64."""
        return (x @ self.encoder_weight + self.encoder_bias).reshape(len(x), self.groups, self.categories)

    def prior_log_probs(self) -> np.ndarray:
        from scipy import special

        logits = np.zeros((self.groups, self.categories)) if self.prior_logits is None else self.prior_logits
        return special.log_softmax(logits, axis=-1)

    def exact(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log p(x), the exact ELBO) per point: every configuration of z, one by one, in float64."""
        import itertools

        from scipy import special

        log_prior, groups = self.prior_log_probs(), np.arange(self.groups)
        logliks, elbos = [], []
        for row, logits in zip(x.astype(np.float64), self.encode(x.astype(np.float64))):
            log_q = special.log_softmax(logits, axis=-1)
            joints, elbo = [], 0.0
            for categories in itertools.product(range(self.categories), repeat=self.groups):
                z = np.zeros((self.groups, self.categories))
                z[groups, categories] = 1.0
                decoded = z.reshape(-1) @ self.decoder_weight + self.decoder_bias
                joint = (row * decoded - np.logaddexp(0.0, decoded)).sum() + log_prior[groups, categories].sum()
                q = log_q[groups, categories].sum()
                joints.append(joint)
                elbo += math.exp(q) * (joint - q)
            logliks.append(special.logsumexp(joints))
            elbos.append(elbo)
        return np.array(logliks), np.array(elbos)

    @property
    def prior(self) -> dict | None:
        return None if self.prior_logits is None else {"type": "categorical", "logits": self.prior_logits.tolist()}

    def write(self, root: Path, name: str = "cat", version: int = 1) -> Path:
        latent = {"type": "categorical", "groups": self.groups, "categories": self.categories}
        return write_model(root, name, version, (self.data_dim,), self.groups * self.categories, "bernoulli",
                           self.encoder, self.decoder, latent=latent, prior=self.prior)


def autoregressive_graph(latent_dim: int, data_shape: tuple[int, ...],
                         outputs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> onnx.ModelProto:
    """z [batch, L], x [batch, *data_shape] -> for each name: z @ A + flatten(x) @ B + c, reshaped to
    [batch, *data_shape]. B (D, D) must be strictly upper triangular (MADE's mask: output d reads x_j for j < d)."""
    data_dim = math.prod(data_shape)
    nodes = [helper.make_node("Flatten", ["x"], ["flat_x"], axis=1)]
    inits = [numpy_helper.from_array(np.array([-1, *data_shape], dtype=np.int64), "shape")]
    values = []
    for name, (a, b, c) in outputs.items():
        assert not np.tril(b).any(), "B must be strictly upper triangular"
        inits += [numpy_helper.from_array(np.asarray(a, np.float32).reshape(latent_dim, data_dim), f"A_{name}"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"B_{name}"),
                  numpy_helper.from_array(np.asarray(c, np.float32), f"c_{name}")]
        nodes += [helper.make_node("MatMul", ["z", f"A_{name}"], [f"za_{name}"]),
                  helper.make_node("MatMul", ["flat_x", f"B_{name}"], [f"xb_{name}"]),
                  helper.make_node("Add", [f"za_{name}", f"xb_{name}"], [f"s_{name}"]),
                  helper.make_node("Add", [f"s_{name}", f"c_{name}"], [f"pre_{name}"]),
                  helper.make_node("Reshape", [f"pre_{name}", "shape"], [name])]
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *data_shape]))
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent_dim]),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *data_shape])]
    graph = helper.make_graph(nodes, "handmade-ar", inputs, values, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


class SmallAutoregressive:
    """An autoregressive decoder over D flat positions of data_shape, all float64 in the reference:

        bernoulli  logits_d = a_d . z + sum_{j<d} B_jd x_j + c_d
        gaussian   mean_d   = a_d . z + sum_{j<d} B_jd x_j + c_d,  logvar_d = sum_{j<d} V_jd x_j + v_d

    with a fixed proposal q(z|x) = N(0.1, 1.4^2 I) for every x (wider than the prior), and a standard normal
    or (latent_dim 1) mixture-of-Gaussians prior. `ignore_x` zeroes B and V: the wrong model that a test of
    the sampler must tell apart."""

    def __init__(self, likelihood="bernoulli", data_shape=(3,), latent_dim=1, mixture=None, seed=5, ignore_x=False):
        rng = np.random.default_rng(seed)
        self.likelihood, self.data_shape, self.latent_dim = likelihood, tuple(data_shape), latent_dim
        self.data_dim = math.prod(data_shape)
        upper = np.triu(np.ones((self.data_dim, self.data_dim)), k=1)
        scale = 0.0 if ignore_x else 1.0
        self.a = rng.normal(scale=1.2, size=(latent_dim, self.data_dim))
        self.b = scale * rng.choice([-2.5, -1.5, 1.5, 2.5], size=(self.data_dim, self.data_dim)) * upper
        self.c = rng.normal(scale=0.5, size=self.data_dim)
        self.v = scale * rng.normal(scale=0.3, size=(self.data_dim, self.data_dim)) * upper
        self.v0 = rng.uniform(-1.0, 0.0, size=self.data_dim)
        self.mixture = mixture  # {"logits", "mean", "logvar"} over latent_dim 1, or None: standard normal
        outputs = ({"logits": (self.a, self.b, self.c)} if likelihood == "bernoulli" else
                   {"mean": (self.a, self.b, self.c), "logvar": (np.zeros_like(self.a), self.v, self.v0)})
        self.decoder = autoregressive_graph(latent_dim, self.data_shape, outputs)
        self.encoder = affine_graph("x", self.data_shape, {
            "mu": (np.zeros((self.data_dim, latent_dim)), np.full(latent_dim, 0.1), (latent_dim,)),
            "logvar": (np.zeros((self.data_dim, latent_dim)), np.full(latent_dim, math.log(1.4**2)), (latent_dim,)),
        })

    def conditionals(self, z: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
        """z (M, L), x (M, D) -> the parameters of every p(x_d | z, x_<d), each (M, D), float64."""
        z, x = np.asarray(z, np.float64), np.asarray(x, np.float64).reshape(len(z), -1)
        first = z @ self.a + x @ self.b + self.c
        if self.likelihood == "bernoulli":
            return {"logits": first}
        return {"mean": first, "logvar": x @ self.v + self.v0}

    def log_conditional(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        """log p(x|z) (M,) = sum_d log p(x_d | z, x_<d), float64."""
        x = np.asarray(x, np.float64).reshape(len(z), -1)
        params = self.conditionals(z, x)
        if self.likelihood == "bernoulli":
            return (x * params["logits"] - np.logaddexp(0.0, params["logits"])).sum(-1)
        return -0.5 * (math.log(2 * math.pi) + params["logvar"] + (x - params["mean"]) ** 2
                       * np.exp(-params["logvar"])).sum(-1)

    def log_prior(self, z: float) -> float:
        from scipy import special, stats

        if self.mixture is None:
            return float(stats.norm.logpdf(z))
        m = self.mixture
        terms = special.log_softmax(m["logits"]) + stats.norm.logpdf(z, np.ravel(m["mean"]), np.exp(0.5 * np.ravel(m["logvar"])))
        return float(special.logsumexp(terms))

    def exact_loglik(self, x: np.ndarray) -> np.ndarray:
        """log p(x) = log int p(z) p(x|z) dz by adaptive quadrature over the 1-D latent, float64."""
        from scipy import integrate

        assert self.latent_dim == 1
        rows = np.asarray(x, np.float64).reshape(len(x), -1)

        def joint(z: float, row: np.ndarray) -> float:
            return math.exp(self.log_prior(z) + self.log_conditional(np.array([[z]]), row[None])[0])

        return np.array([math.log(integrate.quad(joint, -12, 12, args=(r,), epsabs=1e-14, limit=200)[0])
                         for r in rows])

    def draw(self, z: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """A float64 reference sampler: x_d from p(x_d | z, x_<d) with noise[:, d] (uniforms for bernoulli,
        standard normals for gaussian), in order over d."""
        x = np.zeros((len(z), self.data_dim))
        for d in range(self.data_dim):
            params = self.conditionals(z, x)
            if self.likelihood == "bernoulli":
                x[:, d] = noise[:, d] < 1.0 / (1.0 + np.exp(-params["logits"][:, d]))
            else:
                x[:, d] = params["mean"][:, d] + np.exp(0.5 * params["logvar"][:, d]) * noise[:, d]
        return x

    def write(self, root: Path, name: str = "ar", version: int = 1) -> Path:
        prior = None if self.mixture is None else {"type": "mixture_of_gaussians", **self.mixture}
        folder = write_model(root, name, version, self.data_shape, self.latent_dim, self.likelihood, self.encoder,
                             self.decoder, **({"prior": prior} if prior else {}))
        return say_autoregressive(folder)


def say_autoregressive(folder: Path) -> Path:
    """Set likelihood.autoregressive: true in the manifest written by write_model."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["likelihood"]["autoregressive"] = True
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
