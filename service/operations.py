"""The data plane: validate, consult the cache, compute. Plain Python; the routes only translate HTTP.

It orchestrates and does no math: the model's math is modelrepo.likelihood (reached through model.runtime's
prior and likelihood), and /loglik asks the model's one scorer (model.runtime.scorer, service.scoring)."""

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
from anyio import CapacityLimiter, fail_after, get_cancelled_exc_class, to_thread

from modelrepo.categorical import category_noise, draw_categories
from modelrepo.likelihood import generator, latent_noise, log_softmax, one_hot, reparameterise
from service.admission import AdmissionControl
from service.batching import DynamicBatcher, Outputs
from service.budget import budget
from service.cache import Cache, cache_key, pack, unpack
from service.errors import DeadlineExceeded, InvalidInput, NonFiniteResult
from service.inputs import check_limit, check_probability_range, parse_batch
from service.metrics import Metrics
from service.repository import LoadedModel, ModelRepository
from service.runtime import CUDA
from service.scoring import EXACT, IMPORTANCE
from service.settings import Settings

Result = dict[str, np.ndarray]
T = TypeVar("T")


class VaeService:
    def __init__(self, repository: ModelRepository, cache: Cache, settings: Settings, metrics: Metrics,
                 provider: str):
        self.repository, self.cache, self.settings, self.metrics = repository, cache, settings, metrics
        self.provider = provider  # the ONNX Runtime execution provider the sessions were asked to use
        self.compute_slots = CapacityLimiter(settings.compute_slots)  # bounds threads and memory in use
        self.admission = AdmissionControl(settings.max_inflight_work)  # bounds work admitted: past it, 429
        # Requests whose work (values touched) is at most this are coalesced (dynamic batching): every one when
        # VAE_BATCHING=on or, with auto, on CUDA; with auto on the CPU, those small enough to run on the event
        # loop, whose per-call costs one run amortises (larger ones run alone, each within its own deadline).
        if settings.batching == "off":
            self.coalesce_up_to = -1
        elif settings.batching == "on" or provider == CUDA:
            self.coalesce_up_to = math.inf
        else:
            self.coalesce_up_to = settings.inline_work_elements
        self.batcher = DynamicBatcher(
            settings.batch_max_points, settings.batch_wait_ms / 1000, settings.inline_work_elements,
            lambda function: to_thread.run_sync(function, limiter=self.compute_slots),
            lambda operation, requests: metrics.of(metrics.coalesced, operation).observe(requests))

    async def readiness(self) -> tuple[bool, dict]:
        """Ready when at least one model serves; the report names failed models (and versions whose new files
        failed to load while the older load serves) and the cache's state."""
        repository = self.repository
        failed = {f"{f.name}/{f.version}": f.error for versions in repository.failed.values() for f in versions.values()}
        stale = {f"{name}/{v}": error for name, errors in repository.reload_errors.items() for v, error in errors.items()}
        report = {"status": "ready" if repository.loaded else "no model loaded", "models": repository.references(),
                  "failed": failed, "reload_failed": stale, "provider": self.provider,
                  "cache": await self.cache.status()}
        return bool(repository.loaded), report

    def model(self, reference: str | None) -> LoadedModel:
        return self.repository.resolve(reference, self.settings.default_model)

    def _data_batch(self, model: LoadedModel, x: list) -> np.ndarray:
        batch = parse_batch(x, tuple(model.manifest.data_shape), "x", self.settings.max_batch)
        if model.likelihood == "bernoulli":
            check_probability_range(batch, "x")
        return batch

    async def encode(self, reference: str | None, x: list, samples: int, seed: int | None) -> tuple[str, Result]:
        model = self.model(reference)
        batch = self._data_batch(model, x)
        check_limit(samples, self.settings.max_encode_samples, "samples", "VAE_MAX_ENCODE_SAMPLES")
        check_limit(len(batch) * samples, self.settings.max_encode_total_samples, "points x samples",
                    "VAE_MAX_ENCODE_TOTAL_SAMPLES")

        runtime = model.runtime

        async def compute() -> Result:
            outputs = await self._run_rows(model, ("encoder",), runtime.encode, batch, model.data_size)
            result = dict(zip(runtime.encoder_outputs, outputs))  # mu, logvar; or logits (N, G, C)
            if samples:
                def draw() -> np.ndarray:  # (N, samples, *latent_shape), fresh if no seed
                    if runtime.categorical:  # one-hot draws from q(z|x), uniforms shared by the points
                        uniforms = category_noise(seed, samples, runtime.prior.groups)  # (samples, G)
                        return one_hot(draw_categories(log_softmax(result["logits"]), uniforms), runtime.prior.categories)
                    eps = latent_noise(seed, samples, model.manifest.latent_dim)
                    return reparameterise(result["mu"], result["logvar"], eps).astype(np.float32)

                result["z"] = await self._execute(draw, len(batch) * samples * model.manifest.latent_dim)
            return result

        cacheable = samples == 0 or seed is not None
        params = {"samples": samples, "seed": seed if samples else None}
        work = len(batch) * (1 + samples)
        return model.ref, await self._cached(model, "encode", params, (batch,), compute, cacheable, work)

    async def decode(self, reference: str | None, z: list, seed: int | None = None) -> tuple[str, Result]:
        """E[x given z] and the likelihood's parameters; an autoregressive model draws x given z (with `seed`, or
        fresh and not cached without one) and returns x and the parameters at x. Plain models ignore `seed`."""
        model = self.model(reference)
        latents = parse_batch(z, model.runtime.latent_shape, "z", self.settings.max_batch)
        if model.runtime.autoregressive:
            async def draw_x() -> Result:
                result = await self._draw_autoregressive(model, len(latents), seed, lambda rng: latents)
                del result["z"]  # the request's own
                return result

            return model.ref, await self._cached(model, "decode", {"seed": seed}, (latents,), draw_x,
                                                 seed is not None, len(latents) * (model.data_size + 1))

        async def compute() -> Result:
            outputs = model.runtime.decoder_outputs
            arrays = await self._run_rows(model, ("decoder",), lambda z: tuple(model.runtime.decode(z).values()),
                                          latents, model.data_size)
            params = dict(zip(outputs, arrays))
            return {"mean": model.runtime.likelihood.mean(params), **params}

        return model.ref, await self._cached(model, "decode", {}, (latents,), compute, True, len(latents))

    async def sample(self, reference: str | None, n: int, seed: int | None, temperature: float,
                     mode: str) -> tuple[str, Result]:
        model = self.model(reference)
        check_limit(n, self.settings.max_sample_n, "n", "VAE_MAX_SAMPLE_N")
        if model.runtime.autoregressive:
            return model.ref, await self._sample_autoregressive(model, n, seed, temperature, mode)

        def draw() -> Result:  # one generator: z from the prior, then x given z
            runtime, rng = model.runtime, generator(seed)
            z = runtime.prior.sample(rng, n, temperature).astype(np.float32)  # (n, *latent_shape)
            params = runtime.decode(z)
            x = runtime.likelihood.mean(params) if mode == "mean" else runtime.likelihood.sample(params, rng)
            return {"z": z, "x": x}

        async def compute() -> Result:  # not batched: each request draws its own z from its own seed
            return await self._execute(draw, n * model.data_size)

        params = {"n": n, "seed": seed, "temperature": temperature, "mode": mode}
        return model.ref, await self._cached(model, "sample", params, (), compute, seed is not None, n)

    async def _sample_autoregressive(self, model: LoadedModel, n: int, seed: int | None, temperature: float,
                                     mode: str) -> Result:
        if mode == "mean":
            raise InvalidInput(f'mode: "mean" asks for E[x given z], which has no closed form for model {model.ref}, '
                               'whose decoder is autoregressive; send "mode": "sample" to draw x given z')

        async def compute() -> Result:  # z from the prior, then the noise of every position, from one generator
            return await self._draw_autoregressive(
                model, n, seed, lambda rng: model.runtime.prior.sample(rng, n, temperature).astype(np.float32))

        params = {"n": n, "seed": seed, "temperature": temperature, "mode": mode}
        return await self._cached(model, "sample", params, (), compute, seed is not None, n * (model.data_size + 1))

    async def _draw_autoregressive(self, model: LoadedModel, n: int, seed: int | None,
                                   latents: Callable[[np.random.Generator], np.ndarray]) -> Result:
        """x ~ p(x|z) position by position, one decoder pass per position over all n latents, in a worker thread
        that stops between passes when the request is cancelled or runs past its deadline. One generator from
        the seed: latents(rng) gives z (n, *latent_shape) first, then the noise of every point and position.
        Returns z, x and the parameters of p(x_d given z, x_<d) at x: mean, and logits or logvar."""
        runtime, checkpoint = model.runtime, budget().check

        def draw() -> Result:
            rng = generator(seed)
            z = latents(rng)
            noise = runtime.likelihood.noise(rng, (n, model.data_size))  # (n, D)
            x, params = runtime.draw(z, noise, checkpoint)
            return {"z": z, "x": x, "mean": runtime.likelihood.mean(params), **params}

        return await self._execute(draw, n * model.data_size * (model.data_size + 1))

    async def loglik(self, reference: str | None, x: list, k: int, seed: int) -> tuple[str, dict, Result]:
        """The model's reference, {"method", "k"} (k: the samples drawn, or the terms summed exactly), and the
        arrays loglik, stderr, elbo."""
        model = self.model(reference)
        batch = self._data_batch(model, x)
        check_limit(k, self.settings.max_k, "k", "VAE_MAX_K")
        scorer = model.runtime.scorer
        method, terms = scorer.plan(k)
        if method == EXACT:
            check_limit(len(batch) * terms, self.settings.max_loglik_samples, f"points x {terms} configurations "
                        "(summed exactly: send fewer points)", "VAE_MAX_LOGLIK_SAMPLES")
        else:
            check_limit(len(batch) * k, self.settings.max_loglik_samples, "points x k", "VAE_MAX_LOGLIK_SAMPLES")

        # A run of coalesced requests serves several clients: it is not stopped for one of them.
        checkpoint = None if len(batch) * terms * model.data_size <= self.coalesce_up_to else budget().check

        def score(rows: np.ndarray) -> Outputs:
            estimate = scorer.estimate(rows, k, seed, checkpoint)
            return estimate.loglik, estimate.stderr, estimate.elbo

        # Coalesced only with requests of the same run: the same k and seed (the same noise), or the exact sum.
        # The exact sum depends on neither, so its cache entry does not either.
        run = (k, seed) if method == IMPORTANCE else (EXACT,)

        async def compute() -> Result:
            arrays = await self._run_rows(model, ("loglik", *run), score, batch, terms * model.data_size)
            return dict(zip(("loglik", "stderr", "elbo"), arrays))

        params = {"k": k, "seed": seed} if method == IMPORTANCE else {"method": EXACT}
        result = await self._cached(model, "loglik", params, (batch,), compute, True, len(batch) * terms)
        return model.ref, {"method": method, "k": terms}, result

    async def _cached(self, model: LoadedModel, operation: str, params: dict, arrays: tuple[np.ndarray, ...],
                      compute: Callable[[], Awaitable[Result]], cacheable: bool, work: int) -> Result:
        """The cached result, or compute it (if admitted: `work` rows through a model) and cache it."""
        metrics = self.metrics
        metrics.of(metrics.batch_size, operation).observe(len(arrays[0]) if arrays else params["n"])
        cacheable = cacheable and work >= self.settings.cache_min_work  # else computing costs less than caching
        key = cache_key(model.cache_identity, operation, params, arrays) if cacheable else None
        if key is not None:
            hit = await self.cache.get(key)
            if hit is not None:
                try:
                    result = unpack(hit)
                except (ValueError, OSError, KeyError):
                    pass  # a foreign or damaged entry is a miss
                else:
                    metrics.of(metrics.cache_hits, operation).inc()
                    return result
            metrics.of(metrics.cache_misses, operation).inc()
        with self.admission.admit(work):
            result = await compute()
        _check_finite(result, model, operation)  # never a 200 with null, and never cached
        if key is not None:
            value = pack(result)
            if len(value) <= self.settings.cache_max_value_bytes:
                await self.cache.set(key, value)
        return result

    async def _run_rows(self, model: LoadedModel, run: tuple, function: Callable[[np.ndarray], Outputs],
                        rows: np.ndarray, work_per_row: int) -> Outputs:
        """function(rows), coalesced with concurrent requests for the same (model, run) when its work is small
        enough (coalesce_up_to)."""
        if len(rows) * work_per_row > self.coalesce_up_to:
            return await self._execute(lambda: function(rows), len(rows) * work_per_row)
        return await self.batcher.submit((model.ref, model.digest, *run), run[0], rows, function, work_per_row)

    async def _execute(self, function: Callable[[], T], work: int) -> T:
        """Inline when `work` (values touched) is small, a thread hop costing more; else in a worker thread,
        within the request's deadline, and stopped when its client goes away."""
        current = budget()
        current.check()
        if work <= self.settings.inline_work_elements:
            return function()

        def run() -> T:
            current.check()  # a request that waited for a slot past its deadline, or was abandoned, never starts
            return function()

        async with current.watching_disconnect():
            try:
                with fail_after(max(0.0, current.remaining())):
                    return await to_thread.run_sync(run, limiter=self.compute_slots, abandon_on_cancel=True)
            except TimeoutError:
                current.cancelled.set()  # the abandoned thread stops at its next checkpoint
                raise DeadlineExceeded(f"the request ran past its deadline of {current.timeout_s:g} s and was "
                                       "stopped (VAE_REQUEST_TIMEOUT_S, or the X-Request-Timeout header); send "
                                       "less work or retry when the service is less busy") from None
            except get_cancelled_exc_class():
                current.cancelled.set()
                raise


def _check_finite(result: Result, model: LoadedModel, operation: str) -> None:
    """422 when the model produced NaN or infinity: JSON would carry null, and the cache would keep it."""
    for name, array in result.items():
        if array.dtype.kind != "f" or np.isfinite(array).all():  # one pass in the common case
            continue
        finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            fix = ("use a lower temperature" if operation == "sample" else
                   "the input lies far outside the data the model was trained on; send values in its range")
            raise NonFiniteResult(f"{name}[{row}]: model {model.ref} produced NaN or infinity for this request "
                                  f"({int((~finite).sum())} of {len(array)} rows); {fix}")
