"""One engine per loaded model version: everything that is math or a model run happens here.

The repository builds a ModelEngine once, when a version loads, from the files it read and verified. The engine
owns the version's ONNX Runtime sessions (engine.sessions), its prior and likelihood (modelrepo.likelihood) and
its /loglik scorer, chosen once (engine.choice); its calls are plain, synchronous NumPy:

    encode(x, samples, seed)                   x (N, *data_shape) -> mu, logvar (N, L) | logits (N, G, C); z draws
    decode(z, seed, should_stop)               z (N, *latent_shape) -> mean and the likelihood's parameters
    sample(n, seed, temperature, mode, ...)    z from the prior, then x given z
    loglik(x, k, seed, should_stop)            log p(x), its standard error and the ELBO, each (N,)
    feature_scores(x, k, seed, should_stop)    E over p(z|x) of -log p(x_d|z), (N, *data_shape), from the same draws

The version's reference (reference.json, modelrepo.reference) is read with its files: engine.reference, or the
reason it cannot be used in engine.reference_problem.

should_stop, when given, is asked between slices of long work; True stops it with modelrepo.stopping.WorkStopped.
Nothing outside the engine reaches into its parts: what the layers above need to know is in its attributes
(shapes, kinds, the device, the cache identity) and in describe().
"""

import math
from pathlib import Path

import numpy as np

from modelrepo import VersionFiles, check_graph_bytes, read_version
from modelrepo.autoregressive import draw_autoregressive
from modelrepo.categorical import category_noise, draw_categories
from modelrepo.contract import CATEGORICAL_LATENT, EXACT, REFERENCE_FILE
from modelrepo.features import (
    categorical_importance_feature_scores,
    enumerated_feature_scores,
    importance_feature_scores,
)
from modelrepo.likelihood import (
    generator,
    latent_noise,
    likelihood_for,
    log_softmax,
    one_hot,
    prior_for,
    reparameterise,
)
from modelrepo.reference import ConformalScores, Reference, ReferenceError, parse_reference
from modelrepo.stopping import ShouldStop
from service.engine.choice import choose_scorer
from service.engine.options import EngineOptions
from service.engine.sessions import GraphMismatch, ModelSessions
from service.types import LoglikPlan, Result


class ModelEngine:
    def __init__(self, files: VersionFiles, options: EngineOptions):
        manifest = self.manifest = files.manifest
        self.ref, self.name, self.version = manifest.reference, manifest.name, manifest.version
        self.digest = files.digest  # sha256 over the three files, from the very bytes the sessions were built from
        self.data_shape = tuple(manifest.data_shape)
        self.data_size = math.prod(self.data_shape)  # values in one data point
        self.latent_shape = manifest.latent_shape  # (L,), or (G, C) for categorical latents
        self.latent_size = manifest.latent_dim  # values in one latent point
        self.likelihood_type = manifest.likelihood.type
        self.categorical = manifest.latent.type == CATEGORICAL_LATENT
        self.autoregressive = manifest.likelihood.autoregressive  # the decoder takes (z, x): x is drawn in order
        self.image = manifest.image_layout  # how a point is shown as a picture (modelrepo.pictures), or None
        if self.autoregressive and self.categorical:
            raise GraphMismatch("likelihood.autoregressive with categorical latents is not served (the exact sum over "
                                "z and the categorical estimate decode z alone); use Gaussian latents for an "
                                "autoregressive decoder, or drop likelihood.autoregressive")
        self._likelihood = likelihood_for(manifest.likelihood.type)
        self._prior = prior_for(manifest.prior, manifest.latent_shape)
        self._sessions = ModelSessions(manifest, files.encoder, files.decoder, options)
        choice = choose_scorer(manifest, files.encoder, files.decoder, self._sessions, self._prior, self._likelihood,
                               options)
        self._scorer, self._kernel_tier_refusal = choice.scorer, choice.kernel_tier_refusal
        self.device = self._sessions.device  # "cuda" or "cpu": where the graphs run
        self._feature_work_elements = options.slice_width(self.device)
        self.reference, self.reference_problem = _read_reference(files, f"{self.name}/{self.version}")
        self.conformal = ConformalScores(self.reference.scores) if self.reference else None
        # All that decides the numbers: the files, and the scorer's path, precision and provider
        self.cache_identity = f"{self.digest}/{self._scorer.numerics}"

    @classmethod
    def open(cls, folder: Path, options: EngineOptions) -> "ModelEngine":
        """The version in `folder` (<name>/<version>), read, verified and checked as the repository does."""
        folder = Path(folder)
        files = read_version(folder, f"{folder.parent.name}/{folder.name}")
        check_graph_bytes(files.manifest, files.encoder, files.decoder)
        return cls(files, options)

    def encode(self, x: np.ndarray, samples: int = 0, seed: int | None = None) -> Result:
        """x (N, *data_shape) float32 -> q(z|x): mu, logvar (N, L), or logits (N, G, C) for categorical latents;
        with samples > 0 also z (N, samples, *latent_shape), the noise of the seed shared by the N points (fresh
        without a seed)."""
        result = dict(zip(self._sessions.encoder_outputs, self._sessions.encode(x)))
        if not samples:
            return result
        if self.categorical:  # one-hot draws from q(z|x), uniforms (samples, G) shared by the points
            uniforms = category_noise(seed, samples, self._prior.groups)
            result["z"] = one_hot(draw_categories(log_softmax(result["logits"]), uniforms), self._prior.categories)
        else:
            eps = latent_noise(seed, samples, self.latent_size)  # (samples, L)
            result["z"] = reparameterise(result["mu"], result["logvar"], eps).astype(np.float32)
        return result

    def decode(self, z: np.ndarray, seed: int | None = None, should_stop: ShouldStop | None = None) -> Result:
        """z (N, *latent_shape) float32 -> mean E[x given z] and the likelihood's parameters, each (N, *data_shape).
        An autoregressive decoder draws x given z (from the seed; fresh without one) and gives x, and the mean and
        parameters of p(x_d given z, x_<d) at that x. Other models ignore seed and should_stop."""
        if self.autoregressive:
            result = self._draw_autoregressive(generator(seed), z, should_stop)
            del result["z"]  # the caller's own
            return result
        params = self._sessions.decode(z)
        return {"mean": self._likelihood.mean(params), **params}

    def sample(self, n: int, seed: int | None, temperature: float = 1.0, mode: str = "mean",
               should_stop: ShouldStop | None = None) -> Result:
        """n draws from one generator (the seed's; fresh without one): z (n, *latent_shape) from the prior, its
        standard deviation scaled by temperature, then x (n, *data_shape): E[x given z] (mode "mean") or a draw
        (mode "sample"). Autoregressive decoders take mode "sample" only, and add the parameters at x."""
        rng = generator(seed)
        z = self._prior.sample(rng, n, temperature).astype(np.float32)  # (n, *latent_shape)
        if self.autoregressive:
            if mode != "sample":
                raise ValueError(f"{self.ref}: an autoregressive decoder has no closed-form E[x given z]")
            return self._draw_autoregressive(rng, z, should_stop)
        params = self._sessions.decode(z)
        x = self._likelihood.mean(params) if mode == "mean" else self._likelihood.sample(params, rng)
        return {"z": z, "x": x}

    def loglik_plan(self, k: int) -> LoglikPlan:
        """How loglik answers for k: importance-sampled with k samples, or exact over a number of latents."""
        return self._scorer.plan(k)

    def loglik(self, x: np.ndarray, k: int, seed: int, should_stop: ShouldStop | None = None) -> Result:
        """x (N, *data_shape) float32 -> loglik, stderr, elbo (N,) float64, as loglik_plan(k) says: from k samples
        of the seed's noise (the same for every point, so a point's answer does not depend on its batch), or exact."""
        estimate = self._scorer.estimate(x, k, seed, should_stop)
        return {"loglik": estimate.loglik, "stderr": estimate.stderr, "elbo": estimate.elbo}

    def feature_scores(self, x: np.ndarray, k: int, seed: int, should_stop: ShouldStop | None = None) -> Result:
        """x (N, *data_shape) float32 -> feature_scores (N, *data_shape) float64: E over p(z|x) of -log p(x_d|z)
        (autoregressive decoders: given x_<d too), from loglik's draws weighted by their self-normalised importance
        weights, or the exact posterior when loglik_plan(k) sums exactly. On the two graphs, in float64."""
        sessions, prior, likelihood, width = self._sessions, self._prior, self._likelihood, self._feature_work_elements
        if self.categorical and self.loglik_plan(k).method == EXACT:
            scores = enumerated_feature_scores(sessions.decode, likelihood, prior, x, width, should_stop)
        elif self.categorical:
            scores = categorical_importance_feature_scores(sessions.encode, sessions.decode, likelihood, prior, x,
                                                           category_noise(seed, k, prior.groups), width, should_stop)
        else:
            scores = importance_feature_scores(sessions.encode, sessions.decode, likelihood, prior, x,
                                               latent_noise(seed, k, self.latent_size), width, should_stop,
                                               self.autoregressive)
        return {"feature_scores": scores.reshape(len(x), *self.data_shape)}

    def describe(self) -> dict:
        """What GET /models shows of this version, as served."""
        scorer = self._scorer
        refusal = {"kernel_tier": self._kernel_tier_refusal} if self._kernel_tier_refusal else {}
        return {"provider": self._sessions.provider, "loglik_graph": scorer.description, "tier": scorer.tier,
                "precision": scorer.precision, **refusal, "autoregressive": self.autoregressive,
                "digest": self.digest, "reference": self.describe_reference(),
                "manifest": self.manifest.model_dump(mode="json", exclude_unset=True)}

    def describe_reference(self) -> dict | None:
        """None without reference.json; its summary (n, score, k, seed, data, background), or its problem."""
        if self.reference is not None:
            return self.reference.summary()
        return {"error": self.reference_problem} if self.reference_problem else None

    def _draw_autoregressive(self, rng: np.random.Generator, z: np.ndarray, should_stop: ShouldStop | None) -> Result:
        """x ~ p(x|z) position by position (modelrepo.autoregressive), one decoder pass per position over all the
        latents z (N, *latent_shape); the noise of every point and position from rng, after whatever drew z.
        Returns z, x and the mean and parameters of p(x_d given z, x_<d) at x."""
        noise = self._likelihood.noise(rng, (len(z), self.data_size))  # (N, D)
        x, params = draw_autoregressive(self._sessions.decode, self._likelihood, z, self.data_shape, noise,
                                        should_stop)
        return {"z": z, "x": x, "mean": self._likelihood.mean(params), **params}


def _read_reference(files: VersionFiles, where: str) -> tuple[Reference | None, str | None]:
    """(the reference, None), (None, None) without one, or (None, why /score is off for this version)."""
    if files.reference_unreadable:
        return None, f"{where}/{files.reference_unreadable}"
    if files.reference is None:
        return None, None
    try:
        return parse_reference(files.reference, f"{where}/{REFERENCE_FILE}"), None
    except ReferenceError as exc:
        return None, str(exc)
