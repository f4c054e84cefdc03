"""The probability math of a `vae-onnx/1` model in NumPy: priors, likelihoods, the proposal's
reparameterisation and the two-graph importance-sampled estimate of log p(x). No ONNX Runtime here: the
graphs come in as plain callables, so the same math serves any runtime and is tested against closed forms.

    prior       p(z)    = N(0, I)                                      (StandardNormal)
                        | sum_c pi_c N(z; mean_c, diag exp(logvar_c))  (MixtureOfGaussians)
                        | prod_g Cat(z_g; softmax(logits_g))           (Categorical: one-hot z [G, C])
    proposal    q(z|x)  = N(mu, diag exp(logvar)),  z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)
                        (categorical latents: modelrepo.categorical)
    likelihood  p(x|z)  = prod_d Bern(x_d; sigmoid(logits_d))          (Bernoulli)
                        | prod_d N(x_d; mean_d, exp(logvar_d))         (Gaussian)

Random numbers come from one kind of generator, np.random.default_rng(seed): the same seed gives the
same draws, and the noise of k samples is a prefix of the noise of more.
"""

import functools
import math
from collections.abc import Callable

import numpy as np

from modelrepo.contract import (
    CATEGORICAL_PRIOR,
    DECODER_OUTPUTS,
    MIXTURE_OF_GAUSSIANS,
    STANDARD_NORMAL,
    UNIFORM_CATEGORICAL,
)
from modelrepo.importance import ImportanceEstimate, LogMeanExpAccumulator
from modelrepo.stopping import ShouldStop, stop_if_asked

LOG_2PI = math.log(2.0 * math.pi)
Params = dict[str, np.ndarray]  # the decoder's outputs by name (modelrepo.contract.DECODER_OUTPUTS)


def generator(seed: int | None) -> np.random.Generator:
    """The project's one random generator; None: fresh draws."""
    return np.random.default_rng(seed)


NOISE_KEPT_VALUES = 1 << 16  # seeded draws up to this size are kept (64 of them at most: 32 MiB)


def latent_noise(seed: int | None, count: int, latent_dim: int) -> np.ndarray:
    """eps (count, L) standard normal; a prefix of a longer draw with the same seed. Read-only when seeded
    and small: those draws are kept, since seeding a generator costs more than a small model's run."""
    if seed is not None and count * latent_dim <= NOISE_KEPT_VALUES:
        return _kept_noise(seed, count, latent_dim)
    return generator(seed).standard_normal((count, latent_dim))


@functools.lru_cache(maxsize=64)
def _kept_noise(seed: int, count: int, latent_dim: int) -> np.ndarray:
    noise = generator(seed).standard_normal((count, latent_dim))
    noise.flags.writeable = False  # shared by every request with this seed
    return noise


def reparameterise(mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """mu, logvar (N, L), eps (S, L) -> z (N, S, L) = mu + exp(logvar / 2) * eps, S draws from each q(z|x)."""
    return mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps[None]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-l)) in float64, without overflow for large |l|."""
    return np.exp(-np.logaddexp(0.0, -logits.astype(np.float64)))


# Priors. Every Gaussian-family density over R^L carries the factor (2 pi)^(-L/2); log_density_less_2pi
# leaves it out, because it cancels in log p(z) - log q(z|x) and adding it twice would only round.


class StandardNormal:
    """p(z) = N(0, I) over latent_dim dimensions."""

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    def sample(self, rng: np.random.Generator, n: int, temperature: float = 1.0) -> np.ndarray:
        """z (n, L) float64, the standard deviation scaled by `temperature`."""
        return temperature * rng.standard_normal((n, self.latent_dim))

    def log_density_less_2pi(self, z: np.ndarray) -> np.ndarray:
        """z (..., L) -> log p(z) + L/2 log 2 pi (...)."""
        return -0.5 * (z**2).sum(-1)

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """z (..., L) -> log p(z) (...)."""
        return self.log_density_less_2pi(z) - 0.5 * self.latent_dim * LOG_2PI


def log_sum_exp(values: np.ndarray, axis: int) -> np.ndarray:
    """log sum exp(values) along `axis`, in float64, shifted by the maximum so that nothing overflows; -inf where
    every value is -inf."""
    values = np.asarray(values, np.float64)
    peak = values.max(axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(values - peak).sum(axis=axis)) + np.squeeze(peak, axis=axis)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """logits (..., C) -> log softmax over the last axis, float64."""
    logits = np.asarray(logits, np.float64)
    return logits - log_sum_exp(logits, axis=-1)[..., None]


class MixtureOfGaussians:
    """p(z) = sum_c pi_c N(z; mean_c, diag exp(logvar_c)) over L dimensions, pi = softmax(logits)."""

    def __init__(self, logits, mean, logvar):
        self.log_weights = log_softmax(logits)  # (C,)
        self.mean, self.logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)  # each (C, L)
        self.latent_dim = self.mean.shape[1]
        self.precision = np.exp(-self.logvar)  # (C, L)
        # The parts of each component's log-density that do not depend on z: (C,)
        self.log_constant = self.log_weights - 0.5 * (self.logvar.sum(1) + (self.mean**2 * self.precision).sum(1))

    def sample(self, rng: np.random.Generator, n: int, temperature: float = 1.0) -> np.ndarray:
        """z (n, L) float64: c ~ softmax(logits), then z = mean_c + temperature * exp(logvar_c / 2) * eps."""
        components = rng.choice(len(self.log_weights), size=n, p=np.exp(self.log_weights))  # (n,)
        eps = rng.standard_normal((n, self.latent_dim))
        return self.mean[components] + temperature * np.exp(0.5 * self.logvar[components]) * eps

    def log_density_less_2pi(self, z: np.ndarray) -> np.ndarray:
        """z (..., L) -> log p(z) + L/2 log 2 pi (...): every component has the factor, so it leaves the sum.

        log-sum-exp over c of log pi_c - 0.5 sum_l (logvar_cl + (z_l - mean_cl)^2 / var_cl), the square expanded
        into two matrix products so that no (..., C, L) array is formed."""
        z = np.asarray(z, np.float64)
        quadratic = (z**2) @ self.precision.T - 2.0 * z @ (self.mean * self.precision).T  # (..., C)
        return log_sum_exp(self.log_constant - 0.5 * quadratic, axis=-1)

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """z (..., L) -> log p(z) (...)."""
        return self.log_density_less_2pi(z) - 0.5 * self.latent_dim * LOG_2PI


def one_hot(categories: np.ndarray, count: int) -> np.ndarray:
    """category indices (...) -> one-hot (..., count) float32."""
    return (np.asarray(categories)[..., None] == np.arange(count)).astype(np.float32)


class Categorical:
    """p(z) = prod_g Cat(z_g; softmax(logits_g)) over one-hot z (G, C); uniform when every logit is equal."""

    def __init__(self, logits):
        self.log_probs = log_softmax(logits)  # (G, C)
        self.groups, self.categories = self.log_probs.shape

    def sample(self, rng: np.random.Generator, n: int, temperature: float = 1.0) -> np.ndarray:
        """One-hot z (n, G, C) float32, each group's category drawn from softmax(logits_g / temperature) by the
        Gumbel-max trick; temperature 0: the most likely category (equally likely ones drawn uniformly)."""
        gumbel = rng.gumbel(size=(n, self.groups, self.categories))  # (n, G, C)
        if temperature > 0:
            scores = self.log_probs / temperature + gumbel
        else:
            scores = np.where(self.log_probs == self.log_probs.max(-1, keepdims=True), gumbel, -np.inf)
        return one_hot(scores.argmax(-1), self.categories)

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """One-hot z (..., G, C) -> log p(z) (...)."""
        return (np.asarray(z, np.float64) * self.log_probs).sum((-2, -1))


Prior = StandardNormal | MixtureOfGaussians | Categorical
GaussianPrior = StandardNormal | MixtureOfGaussians  # over R^L: they have log_density_less_2pi


def prior_for(prior, latent_shape: tuple[int, ...] | int) -> Prior:
    """The prior of a manifest: its `prior` (modelrepo.manifest's model of it, or the type alone for the priors
    without parameters) over latent points of `latent_shape` (the manifest's: (latent_dim,) or (G, C))."""
    kind = prior if isinstance(prior, str) else prior.type
    shape = (latent_shape,) if isinstance(latent_shape, int) else tuple(latent_shape)
    if kind == STANDARD_NORMAL:
        return StandardNormal(shape[0])
    if kind == MIXTURE_OF_GAUSSIANS:
        return MixtureOfGaussians(prior.logits, prior.mean, prior.logvar)
    if kind == UNIFORM_CATEGORICAL:
        return Categorical(np.zeros(shape))
    if kind == CATEGORICAL_PRIOR:
        return Categorical(prior.logits)
    raise ValueError(f"prior: unknown type {kind!r}")


# Likelihoods: p(x|z) from the decoder's outputs. x and every parameter are (..., D), flat over data_shape,
# or (N, *data_shape) where only elementwise work is done (mean, sample).


class Bernoulli:
    """p(x|z) = prod_d Bern(x_d; sigmoid(logits_d)); x may be fractional in [0, 1]."""

    outputs = DECODER_OUTPUTS["bernoulli"]  # ("logits",)

    def log_density(self, x: np.ndarray, params: Params) -> np.ndarray:
        """x (..., D) against logits (..., D), broadcast -> log p(x|z) (...) in float64."""
        return self.log_density_elements(x, params).sum(-1)

    def log_density_elements(self, x: np.ndarray, params: Params) -> np.ndarray:
        """x (..., D) against logits (..., D), broadcast -> log p(x_d|z) (..., D) in float64."""
        logits = self._logits(params).astype(np.float64)
        return x * logits - np.logaddexp(0.0, logits)

    def mean(self, params: Params) -> np.ndarray:
        """E[x|z] = sigmoid(logits), float32."""
        return sigmoid(self._logits(params)).astype(np.float32)

    def sample(self, params: Params, rng: np.random.Generator) -> np.ndarray:
        """x ~ p(x|z), float32 zeros and ones."""
        logits = self._logits(params)
        return self.draw(params, self.noise(rng, logits.shape))

    @staticmethod
    def noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """The randomness of `shape` draws: uniforms on [0, 1), float64."""
        return rng.uniform(size=shape)

    def draw(self, params: Params, noise: np.ndarray) -> np.ndarray:
        """x = 1 where noise < sigmoid(logits), else 0 (float32): a draw of p(x|z) given noise from `noise`."""
        return (noise < sigmoid(self._logits(params))).astype(np.float32)

    def _logits(self, params: Params) -> np.ndarray:
        (logits,) = (params[name] for name in self.outputs)
        return logits


class Gaussian:
    """p(x|z) = prod_d N(x_d; mean_d, exp(logvar_d))."""

    outputs = DECODER_OUTPUTS["gaussian"]  # ("mean", "logvar")

    def log_density(self, x: np.ndarray, params: Params) -> np.ndarray:
        """x (..., D) against mean, logvar (..., D), broadcast -> log p(x|z) (...) in float64."""
        mean, logvar = (value.astype(np.float64) for value in self._mean_logvar(params))
        return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * np.exp(-logvar)).sum(-1)

    def log_density_elements(self, x: np.ndarray, params: Params) -> np.ndarray:
        """x (..., D) against mean, logvar (..., D), broadcast -> log p(x_d|z) (..., D) in float64."""
        mean, logvar = (value.astype(np.float64) for value in self._mean_logvar(params))
        return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * np.exp(-logvar))

    def mean(self, params: Params) -> np.ndarray:
        """E[x|z] = the mean, as the decoder gave it."""
        return self._mean_logvar(params)[0]

    def sample(self, params: Params, rng: np.random.Generator) -> np.ndarray:
        """x ~ p(x|z), float32."""
        return self.draw(params, self.noise(rng, self._mean_logvar(params)[0].shape))

    @staticmethod
    def noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """The randomness of `shape` draws: standard normals, float64."""
        return rng.standard_normal(shape)

    def draw(self, params: Params, noise: np.ndarray) -> np.ndarray:
        """x = mean + exp(logvar / 2) * noise (float32): a draw of p(x|z) given noise from `noise`."""
        mean, logvar = self._mean_logvar(params)
        return (mean + np.exp(0.5 * logvar) * noise).astype(np.float32)

    def _mean_logvar(self, params: Params) -> tuple[np.ndarray, np.ndarray]:
        mean, logvar = (params[name] for name in self.outputs)
        return mean, logvar


Likelihood = Bernoulli | Gaussian
_LIKELIHOODS: dict[str, Likelihood] = {"bernoulli": Bernoulli(), "gaussian": Gaussian()}


def likelihood_for(likelihood_type: str) -> Likelihood:
    """The likelihood a manifest's `likelihood.type` names."""
    return _LIKELIHOODS[likelihood_type]


def slicing(points: int, k: int, data_dim: int, latent_dim: int, work_elements: int) -> tuple[int, int]:
    """(block of points, chunk of K) per decoder run, so that block * chunk * max(D, L) <= ~work_elements.

    The chunk depends on k alone (never on the number of points), so a point's sums, and their rounding, do
    not depend on the batch it came in.
    """
    pairs = max(1, work_elements // max(data_dim, latent_dim))  # (point, sample) pairs per run
    chunk = min(k, pairs)
    return max(1, min(points, pairs // chunk)), chunk


def importance_sampled_loglik(
    encode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], decode: Callable[[np.ndarray], Params],
    likelihood: Likelihood, prior: GaussianPrior, x: np.ndarray, eps: np.ndarray, work_elements: int,
    should_stop: ShouldStop | None = None, autoregressive: bool = False,
) -> ImportanceEstimate:
    """The contract's estimate of log p(x) on the model's two graphs, in float64 on the host.

    encode: x (n, *data_shape) f32 -> mu, logvar (n, L); decode: z (m, L) f32 -> params, each (m, *data_shape).
    autoregressive: decode takes (z (m, L), x (m, *data_shape)) and is run once per slice on each point's x
    repeated beside its samples of z (teacher forcing: every p(x_d | z, x_<d) in one pass).
    x (N, *data_shape) f32, eps (K, L): the same noise for every point. log w = log p(x|z) + log p(z) - log q(z|x)
    over z = mu + exp(logvar / 2) * eps, at most ~work_elements values alive at once (`slicing`).
    should_stop(), when given, is asked before every slice; True stops the work (modelrepo.stopping).
    """
    n, data_dim = len(x), math.prod(x.shape[1:])
    k, latent_dim = eps.shape
    terms = gaussian_slice_terms(encode, decode, prior, x, eps, autoregressive)
    flat_x = x.reshape(n, 1, data_dim).astype(np.float64)  # (N, 1, D)

    def log_weights(rows: slice, samples: slice) -> np.ndarray:  # (b, c)
        params, log_prior_ratio = terms(rows, samples)
        return likelihood.log_density(flat_x[rows], params) + log_prior_ratio

    return estimate_in_slices(n, k, slicing(n, k, data_dim, latent_dim, work_elements), log_weights, should_stop)


SliceTerms = Callable[[slice, slice], tuple[Params, np.ndarray]]


def gaussian_slice_terms(encode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                         decode: Callable[[np.ndarray], Params], prior: GaussianPrior, x: np.ndarray,
                         eps: np.ndarray, autoregressive: bool = False) -> SliceTerms:
    """The encoder run once over x (N, *data_shape); then terms(rows, samples) -> (the decoder's params at
    z = mu + exp(logvar / 2) * eps for those rows and samples, each (b, c, D); log p(z) - log q(z|x) (b, c)),
    so that log w = log p(x|z) + that ratio. Arguments as importance_sampled_loglik's."""
    n, data_dim = len(x), math.prod(x.shape[1:])
    latent_dim = eps.shape[1]
    mu, logvar = (a.astype(np.float64) for a in encode(x))  # (N, L)
    # -log q(z|x) = 0.5 sum(logvar) + 0.5 sum(eps^2), less its L/2 log 2 pi (see the priors)
    half_logvar = 0.5 * logvar.sum(-1)  # (N,)
    half_eps_sq = 0.5 * (eps**2).sum(-1)  # (K,)

    def terms(rows: slice, samples: slice) -> tuple[Params, np.ndarray]:
        b, c = rows.stop - rows.start, samples.stop - samples.start
        z = reparameterise(mu[rows], logvar[rows], eps[samples])  # (b, c, L)
        z_rows = z.reshape(b * c, latent_dim).astype(np.float32)
        params = decode(z_rows, np.repeat(x[rows], c, axis=0)) if autoregressive else decode(z_rows)
        params = {name: value.reshape(b, c, data_dim) for name, value in params.items()}  # each (b, c, D)
        log_prior_ratio = prior.log_density_less_2pi(z) + half_logvar[rows, None] + half_eps_sq[None, samples]
        return params, log_prior_ratio

    return terms


def estimate_in_slices(n: int, k: int, block_and_chunk: tuple[int, int],
                       log_weights: Callable[[slice, slice], np.ndarray],
                       should_stop: ShouldStop | None = None) -> ImportanceEstimate:
    """The contract's estimate for N points from k log-weights each, computed a block of points by a chunk of
    samples at a time (`slicing`): log_weights(rows, samples) -> (b, c). should_stop() is asked before every slice."""
    block, chunk = block_and_chunk
    results = []
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        accumulator = LogMeanExpAccumulator(rows.stop - rows.start)
        for first in range(0, k, chunk):
            stop_if_asked(should_stop)
            accumulator.add(log_weights(rows, slice(first, min(first + chunk, k))))
        results.append(accumulator.result())
    return ImportanceEstimate.concatenate(results)
