"""The data plane: resolve the model, check the input, describe the job; then the cache-or-compute step
(dataplane.results) and the executor (dataplane.executor) answer it. Plain Python: the HTTP tier parses and
replies, the engine (engine.engine) does every model run and all the math.

Each operation returns (the version that answered, its arrays); loglik also says how they were computed; score
answers against the version's reference (dataplane.scoring).
"""

import asyncio

import numpy as np

from modelrepo.contract import EXACT, IMPORTANCE
from modelrepo.manifest import Image
from modelrepo.paths import latent_path
from service.dataplane.cache import Cache
from service.dataplane.executor import Executor
from service.dataplane.inputs import check_limit, check_probability_range, parse_batch
from service.dataplane.jobs import Job
from service.dataplane.results import CachedResults
from service.dataplane.scoring import Scored, score_points, threshold_for
from service.engine.engine import ModelEngine
from service.engine.repository import ModelRepository
from service.errors import InvalidInput, ModelNotFound, NotAcceptable, ScoringUnavailable
from service.metrics import Metrics
from service.settings import Settings
from service.types import LoglikPlan, Result


class DataPlane:
    def __init__(self, repository: ModelRepository, cache: Cache, settings: Settings, metrics: Metrics):
        self.repository = repository  # swapped whole by a reload (dataplane.reload); read once per request
        self.cache, self.settings, self.metrics = cache, settings, metrics
        self.executor = Executor(settings, metrics)
        self.results = CachedResults(cache, self.executor, settings, metrics)

    def model(self, reference: str | None) -> ModelEngine:
        """"name", "name:version", or None for the default model (VAE_DEFAULT_MODEL)."""
        return self.repository.resolve(reference, self.settings.default_model)

    async def encode(self, reference: str | None, x: list | np.ndarray, samples: int,
                     seed: int | None) -> tuple[str, Result]:
        engine = self.model(reference)
        rows = self._data_points(engine, x)
        check_limit(samples, self.settings.max_encode_samples, "samples", "VAE_MAX_ENCODE_SAMPLES")
        check_limit(len(rows) * samples, self.settings.max_encode_total_samples, "points x samples",
                    "VAE_MAX_ENCODE_TOTAL_SAMPLES")
        # The encoder alone (no draws) is the same run for every request; draws share a run only when they draw
        # the same noise (the seed's, shared by every point): fresh draws run alone, no two clients share noise.
        if samples == 0:
            run = ("encoder",)
        else:
            run = ("encoder", samples, seed) if seed is not None else None
        job = Job(engine, "encode", {"samples": samples, "seed": seed if samples else None}, rows, len(rows),
                  lambda rows, _: engine.encode(rows, samples, seed), work=len(rows) * (1 + samples),
                  values=len(rows) * (engine.data_size + samples * engine.latent_size),
                  cacheable=samples == 0 or seed is not None, run=run)
        return engine.ref, await self.results.answer(job)

    async def decode(self, reference: str | None, z: list | np.ndarray, seed: int | None = None) -> tuple[str, Result]:
        """E[x given z] and the likelihood's parameters; an autoregressive model draws x given z (with `seed`, or
        fresh and not cached without one). Plain models ignore `seed`: their answers and cache keys do not
        depend on it."""
        engine = self.model(reference)
        rows = parse_batch(z, engine.latent_shape, "z", self.settings.max_batch)
        n, size = len(rows), engine.data_size
        if engine.autoregressive:  # one decoder pass per position: never coalesced
            job = Job(engine, "decode", {"seed": seed}, rows, n,
                      lambda rows, should_stop: engine.decode(rows, seed, should_stop), work=n * (size + 1),
                      values=n * size * (size + 1), cacheable=seed is not None)
        else:
            job = Job(engine, "decode", {}, rows, n, lambda rows, _: engine.decode(rows), work=n, values=n * size,
                      run=("decoder",))
        return engine.ref, await self.results.answer(job)

    def image_of(self, reference: str | None) -> Image:
        """How the model shows a point as a picture; 406 when it has no image shape (before any work is done)."""
        engine = self.model(reference)
        if engine.image is None:
            raise NotAcceptable(f"Accept: image/png: model {engine.ref} has no image shape (data_shape "
                                f"{list(engine.data_shape)}); its manifest needs the key \"image\": "
                                '{"height": H, "width": W, "channels": 1 or 3}, or ask for application/json')
        return engine.image

    async def interpolate(self, reference: str | None, x: list | np.ndarray | None, z: list | np.ndarray | None,
                          steps: int, path: str, seed: int | None = None) -> tuple[str, Result]:
        """A path of `steps` latents between two points (their encoder means, from x) or two latents (z), and
        what /decode answers for it: z (steps, L) and x, its mean (steps, *data_shape)."""
        engine = self.model(reference)
        if engine.categorical:
            raise InvalidInput(f"model {engine.ref} has categorical latents: a path between one-hot points passes "
                               "through values that are not latents of the model; /interpolate takes Gaussian "
                               "latents only")
        if (x is None) == (z is None):
            raise InvalidInput("x, z: send the two ends as x (two data points, encoded to their means) or as z "
                               "(two latent points), one of them")
        if x is not None:
            rows = self._data_points(engine, x)
            _check_two(rows, "x")
            ends = (await self.encode(engine.ref, rows, 0, None))[1]["mu"]  # (2, L)
        else:
            ends = parse_batch(z, engine.latent_shape, "z", self.settings.max_batch)
            _check_two(ends, "z")
        latents = latent_path(ends[0], ends[1], steps, path).astype(np.float32)  # (steps, L)
        _, decoded = await self.decode(engine.ref, latents, seed)
        return engine.ref, {"z": latents, "x": decoded["mean"]}

    async def sample(self, reference: str | None, n: int, seed: int | None, temperature: float,
                     mode: str) -> tuple[str, Result]:
        """z from the prior (at the temperature), then x given z; never coalesced: each draws from its own seed."""
        engine = self.model(reference)
        check_limit(n, self.settings.max_sample_n, "n", "VAE_MAX_SAMPLE_N")
        size = engine.data_size
        if engine.autoregressive and mode == "mean":
            raise InvalidInput(f'mode: "mean" asks for E[x given z], which has no closed form for model {engine.ref}, '
                               'whose decoder is autoregressive; send "mode": "sample" to draw x given z')
        passes = size + 1 if engine.autoregressive else 1  # decoder passes per draw
        job = Job(engine, "sample", {"n": n, "seed": seed, "temperature": temperature, "mode": mode}, None, n,
                  lambda _, should_stop: engine.sample(n, seed, temperature, mode, should_stop),
                  work=n * passes, values=n * size * passes,
                  cacheable=seed is not None)
        return engine.ref, await self.results.answer(job)

    async def loglik(self, reference: str | None, x: list | np.ndarray, k: int,
                     seed: int) -> tuple[str, LoglikPlan, Result]:
        """log p(x), its standard error and the ELBO per point, and the plan: the method and k (the samples
        drawn, or the terms summed exactly)."""
        engine = self.model(reference)
        rows = self._data_points(engine, x)
        plan, job = self._loglik_job(engine, rows, k, seed)
        return engine.ref, plan, await self.results.answer(job)

    async def score(self, reference: str | None, x: list | np.ndarray, fpr: float | None,
                    features: bool) -> tuple[str, Scored]:
        """The version's reference scores against x (dataplane.scoring): /loglik's own answer with the
        reference's k and seed (the same job, so the same numbers and cache entries), the background's for a
        likelihood ratio, and, when asked, the per-feature scores from the same draws."""
        engine = self.model(reference)
        snapshot = self.repository
        ref, background = snapshot.scoring(engine)
        if ref.k > self.settings.max_k:
            raise ScoringUnavailable(f"model {engine.ref}: its reference was scored with k={ref.k}, over this "
                                     f"service's VAE_MAX_K={self.settings.max_k}; raise VAE_MAX_K or remake the "
                                     "reference with a smaller --k")
        fpr = self.settings.default_fpr if fpr is None else fpr
        threshold = threshold_for(engine, fpr)
        rows = self._data_points(engine, x)
        plan, job = self._loglik_job(engine, rows, ref.k, ref.seed)
        jobs = [self.results.answer(job)]
        if background is not None:
            if background.likelihood_type == "bernoulli":
                check_probability_range(rows, "x")
            jobs.append(self.results.answer(self._loglik_job(background, rows, ref.k, ref.seed)[1]))
        if features:
            jobs.append(self.results.answer(self._feature_job(engine, rows, plan, ref.k, ref.seed)))
        answers = await asyncio.gather(*jobs)
        own = answers[0]
        background_loglik = answers[1]["loglik"] if background is not None else None
        feature_scores = answers[-1]["feature_scores"] if features else None
        scored = score_points(engine, ref, fpr, threshold, plan, own, background_loglik, feature_scores)
        self._count(engine, scored)
        return engine.ref, scored

    def _loglik_job(self, engine: ModelEngine, rows: np.ndarray, k: int, seed: int) -> tuple[LoglikPlan, Job]:
        check_limit(k, self.settings.max_k, "k", "VAE_MAX_K")
        plan = engine.loglik_plan(k)
        if plan.method == EXACT:
            check_limit(len(rows) * plan.terms, self.settings.max_loglik_samples, f"points x {plan.terms} "
                        "configurations (summed exactly: send fewer points)", "VAE_MAX_LOGLIK_SAMPLES")
        else:
            check_limit(len(rows) * k, self.settings.max_loglik_samples, "points x k", "VAE_MAX_LOGLIK_SAMPLES")
        # Coalesced only with requests of the same run: the same k and seed (the same noise), or the exact sum,
        # which depends on neither, and neither does its cache entry.
        importance = plan.method == IMPORTANCE
        job = Job(engine, "loglik", {"k": k, "seed": seed} if importance else {"method": EXACT}, rows, len(rows),
                  lambda rows, should_stop: engine.loglik(rows, k, seed, should_stop), work=len(rows) * plan.terms,
                  values=len(rows) * plan.terms * engine.data_size,
                  run=("loglik", k, seed) if importance else ("loglik", EXACT))
        return plan, job

    @staticmethod
    def _feature_job(engine: ModelEngine, rows: np.ndarray, plan: LoglikPlan, k: int, seed: int) -> Job:
        """The per-feature scores from loglik's draws (the same plan); never coalesced: a run of its own."""
        importance = plan.method == IMPORTANCE
        return Job(engine, "features", {"k": k, "seed": seed} if importance else {"method": EXACT}, rows, len(rows),
                   lambda rows, should_stop: engine.feature_scores(rows, k, seed, should_stop),
                   work=len(rows) * plan.terms, values=len(rows) * plan.terms * engine.data_size)

    def _count(self, engine: ModelEngine, scored: Scored) -> None:
        """Scored points, outliers and the p-values' histogram, per model version (drift shows as skew)."""
        metrics = self.metrics
        metrics.of(metrics.scored_points, engine.ref).inc(len(scored.p_value))
        metrics.of(metrics.outliers, engine.ref).inc(int(scored.is_outlier.sum()))
        histogram = metrics.of(metrics.p_values, engine.ref)
        for p_value in scored.p_value.tolist():
            histogram.observe(p_value)

    def describe_models(self) -> dict:
        """GET /models: every model in the repository, its versions, manifests, readiness and how each runs."""
        repository = self.repository
        return {"default_model": self.settings.default_model,
                "models": [repository.describe(name) for name in repository.names()]}

    def describe_model(self, name: str) -> dict:
        repository = self.repository
        if name not in repository.names():
            raise ModelNotFound(f"model: no model {name!r}; GET /models lists them")
        return repository.describe(name)

    def loaded_versions(self, name: str) -> list[int]:
        """The versions of `name` that serve, oldest first."""
        return sorted(self.repository.loaded.get(name, {}))

    def scoring_problem(self, engine: ModelEngine) -> str | None:
        """Why this version cannot answer /score now (no usable reference, no background), or None."""
        return self.repository.scoring_problem(engine)

    async def readiness(self) -> tuple[bool, dict]:
        """Ready when at least one model serves; the report names failed models (and versions whose new files
        failed to load while the older load serves), the device and the cache's state."""
        repository = self.repository
        failed = {f"{f.name}/{f.version}": f.error for versions in repository.failed.values() for f in versions.values()}
        stale = {f"{name}/{v}": error for name, errors in repository.reload_errors.items() for v, error in errors.items()}
        report = {"status": "ready" if repository.loaded else "no model loaded", "models": repository.references(),
                  "failed": failed, "reload_failed": stale, "provider": repository.options.providers[0],
                  "cache": await self.cache.status()}
        return bool(repository.loaded), report

    def _data_points(self, engine: ModelEngine, x: list | np.ndarray) -> np.ndarray:
        rows = parse_batch(x, engine.data_shape, "x", self.settings.max_batch)
        if engine.likelihood_type == "bernoulli":
            check_probability_range(rows, "x")
        return rows


def _check_two(points: np.ndarray, field: str) -> None:
    if len(points) != 2:
        raise InvalidInput(f"{field}: {len(points)} points; a path needs exactly 2, its two ends")
