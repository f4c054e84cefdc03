"""Classical density models on the same splits as the VAE, to say how much the VAE gains.

Every score is a mean test log-likelihood in nats per data point. Hyper-parameters are chosen on the
validation split carved from the training data (the same one the VAE uses); the test split decides nothing.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from training.data import Dataset

GMM_COMPONENTS = (1, 2, 4, 8, 16, 32, 64)
GMM_REGULARISATION = (1e-4, 1e-3, 1e-2)
BERNOULLI_MIXTURE_COMPONENTS = (2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class BaselineScore:
    name: str
    test_loglik: float
    chosen: str  # the hyper-parameters, as a person would write them


@dataclass(frozen=True)
class FittedBaseline:
    """A baseline fitted on the training split with the hyper-parameters it chose on validation."""

    name: str
    chosen: str
    log_prob: Callable[[np.ndarray], np.ndarray]  # flat rows (N, D) float64 -> log-likelihood per row (N,)

    def score(self, test: np.ndarray) -> BaselineScore:
        return BaselineScore(self.name, float(self.log_prob(test).mean()), self.chosen)


def fit_continuous_baselines(dataset: Dataset, latent_dim: int, val_fraction: float) -> list[FittedBaseline]:
    """PPCA at the VAE's latent size, and the full-covariance Gaussian mixture best on validation."""
    train_raw, val = dataset.split_validation(val_fraction)
    train = dataset.observe(train_raw, np.random.default_rng(2))  # one fixed dequantisation draw
    train, val = (a.reshape(len(a), -1).astype(np.float64) for a in (train, val))
    ppca = PCA(n_components=min(latent_dim, train.shape[1])).fit(train)
    best = max(
        ((GaussianMixture(c, covariance_type="full", reg_covar=r, random_state=0, max_iter=500).fit(train), c, r)
         for c in GMM_COMPONENTS for r in GMM_REGULARISATION),
        key=lambda fit: fit[0].score(val),
    )
    gmm, components, reg = best
    return [FittedBaseline(f"PPCA ({latent_dim} components)", f"n_components={latent_dim}", ppca.score_samples),
            FittedBaseline("Gaussian mixture (full covariance)", f"components={components}, reg_covar={reg:g}",
                           gmm.score_samples)]


def fit_binary_baselines(dataset: Dataset, val_fraction: float,
                         components: tuple[int, ...] = BERNOULLI_MIXTURE_COMPONENTS) -> list[FittedBaseline]:
    """Independent Bernoullis, and the mixture of Bernoullis (EM) whose number of components is best on validation."""
    train_raw, val = dataset.split_validation(val_fraction)
    train, val = (a.reshape(len(a), -1).astype(np.float64) for a in (train_raw, val))
    independent = IndependentBernoulli.fit(train)
    fits = [(BernoulliMixture.fit(train, c, seed=0), c) for c in components]
    mixture, chosen = max(fits, key=lambda fit: fit[0].log_prob(val).mean())
    return [FittedBaseline("Independent Bernoullis", "Laplace smoothing", independent.log_prob),
            FittedBaseline("Mixture of Bernoullis (EM)", f"components={chosen}", mixture.log_prob)]


def continuous_baselines(dataset: Dataset, latent_dim: int, val_fraction: float) -> list[BaselineScore]:
    test = dataset.test.reshape(len(dataset.test), -1).astype(np.float64)
    return [fitted.score(test) for fitted in fit_continuous_baselines(dataset, latent_dim, val_fraction)]


def binary_baselines(dataset: Dataset, val_fraction: float) -> list[BaselineScore]:
    test = dataset.test.reshape(len(dataset.test), -1).astype(np.float64)
    return [fitted.score(test) for fitted in fit_binary_baselines(dataset, val_fraction)]


@dataclass(frozen=True)
class IndependentBernoulli:
    probs: np.ndarray  # (D,)

    @classmethod
    def fit(cls, x: np.ndarray) -> "IndependentBernoulli":
        return cls((x.sum(0) + 1.0) / (len(x) + 2.0))  # Laplace smoothing keeps every probability inside (0, 1)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        return x @ np.log(self.probs) + (1 - x) @ np.log1p(-self.probs)


@dataclass(frozen=True)
class BernoulliMixture:
    """p(x) = sum_c pi_c prod_d Bern(x_d; theta_cd), fitted by EM with a Beta(2, 2) prior on theta."""

    log_weights: np.ndarray  # (C,)
    probs: np.ndarray  # (C, D)

    def component_log_probs(self, x: np.ndarray) -> np.ndarray:
        """x (N, D) -> log pi_c + log p(x | c), (N, C)."""
        return self.log_weights + x @ np.log(self.probs).T + (1 - x) @ np.log1p(-self.probs).T

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        return logsumexp(self.component_log_probs(x), axis=1)

    @classmethod
    def fit(cls, x: np.ndarray, components: int, seed: int = 0, iterations: int = 300, tol: float = 1e-6) -> "BernoulliMixture":
        rng = np.random.default_rng(seed)
        model = cls(np.full(components, -math.log(components)), rng.uniform(0.25, 0.75, size=(components, x.shape[1])))
        previous = -np.inf
        for _ in range(iterations):
            joint = model.component_log_probs(x)  # (N, C)
            total = logsumexp(joint, axis=1)  # (N,)
            responsibilities = np.exp(joint - total[:, None])  # (N, C)
            counts = responsibilities.sum(0)  # (C,)
            probs = (responsibilities.T @ x + 1.0) / (counts[:, None] + 2.0)
            model = cls(np.log((counts + 1e-12) / len(x)), probs)
            mean = total.mean()
            if mean - previous < tol:
                break
            previous = mean
        return model
