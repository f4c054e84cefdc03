"""The data plane: validate, consult the cache, compute. Plain Python; the routes only translate HTTP."""

from collections.abc import Callable

import numpy as np
from anyio import CapacityLimiter, to_thread

from service.cache import Cache, cache_key, pack, unpack
from service.inputs import check_limit, check_probability_range, parse_batch
from service.likelihood import (
    expected_observation,
    importance_sampled_loglik,
    latent_noise,
    sample_observations,
)
from service.metrics import Metrics
from service.repository import LoadedModel, ModelRepository
from service.settings import Settings

Result = dict[str, np.ndarray]


class VaeService:
    def __init__(self, repository: ModelRepository, cache: Cache, settings: Settings, metrics: Metrics,
                 provider: str):
        self.repository, self.cache, self.settings, self.metrics = repository, cache, settings, metrics
        self.provider = provider  # the ONNX Runtime execution provider the sessions were asked to use
        self.compute_slots = CapacityLimiter(settings.compute_slots)  # bounds threads and memory in use

    async def readiness(self) -> tuple[bool, dict]:
        """Ready when at least one model serves; the report names failed models and the cache's state."""
        repository = self.repository
        failed = {f"{f.name}/{f.version}": f.error for versions in repository.failed.values() for f in versions.values()}
        report = {"status": "ready" if repository.loaded else "no model loaded", "models": repository.references(),
                  "failed": failed, "provider": self.provider, "cache": await self.cache.status()}
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

        def compute() -> Result:
            mu, logvar = model.runtime.encode(batch)
            result = {"mu": mu, "logvar": logvar}
            if samples:
                eps = latent_noise(seed, samples, model.manifest.latent_dim)  # (samples, L); fresh when seed is None
                z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps[None]  # (N, samples, L)
                result["z"] = z.astype(np.float32)
            return result

        cacheable = samples == 0 or seed is not None
        params = {"samples": samples, "seed": seed if samples else None}
        work = batch.size + len(batch) * samples * model.manifest.latent_dim
        return model.ref, await self._cached(model, "encode", params, (batch,), compute, cacheable, len(batch), work)

    async def decode(self, reference: str | None, z: list) -> tuple[str, Result]:
        model = self.model(reference)
        latents = parse_batch(z, (model.manifest.latent_dim,), "z", self.settings.max_batch)

        def compute() -> Result:
            params = model.runtime.decode(latents)
            return {"mean": expected_observation(params), **params}

        work = len(latents) * model.data_size
        return model.ref, await self._cached(model, "decode", {}, (latents,), compute, True, len(latents), work)

    async def sample(self, reference: str | None, n: int, seed: int | None, temperature: float,
                     mode: str) -> tuple[str, Result]:
        model = self.model(reference)
        check_limit(n, self.settings.max_sample_n, "n", "VAE_MAX_SAMPLE_N")

        def compute() -> Result:
            rng = np.random.default_rng(seed)
            z = (temperature * rng.standard_normal((n, model.manifest.latent_dim))).astype(np.float32)
            params = model.runtime.decode(z)
            x = expected_observation(params) if mode == "mean" else sample_observations(params, rng)
            return {"z": z, "x": x}

        params = {"n": n, "seed": seed, "temperature": temperature, "mode": mode}
        return model.ref, await self._cached(model, "sample", params, (), compute, seed is not None, n,
                                             n * model.data_size)

    async def loglik(self, reference: str | None, x: list, k: int, seed: int) -> tuple[str, Result]:
        model = self.model(reference)
        batch = self._data_batch(model, x)
        check_limit(k, self.settings.max_k, "k", "VAE_MAX_K")
        check_limit(len(batch) * k, self.settings.max_loglik_samples, "points x k", "VAE_MAX_LOGLIK_SAMPLES")

        def compute() -> Result:
            estimate = importance_sampled_loglik(model.runtime, batch, k, seed, self._work_elements(model))
            return {"loglik": estimate.loglik, "stderr": estimate.stderr, "elbo": estimate.elbo}

        params = {"k": k, "seed": seed}
        return model.ref, await self._cached(model, "loglik", params, (batch,), compute, True, len(batch),
                                             len(batch) * k * model.data_size)

    def _work_elements(self, model: LoadedModel) -> int:
        scorer = model.runtime.scorer
        on_cuda = scorer is not None and scorer.device == "cuda"
        return self.settings.cuda_work_elements if on_cuda else self.settings.work_elements

    async def _cached(self, model: LoadedModel, operation: str, params: dict, arrays: tuple[np.ndarray, ...],
                      compute: Callable[[], Result], cacheable: bool, batch_size: int, work: int) -> Result:
        """The cached result, or compute it: inline when `work` (values touched) is small, else in a thread."""
        self.metrics.batch_size.labels(operation).observe(batch_size)
        key = cache_key(model.digest, operation, params, arrays) if cacheable else None
        if key is not None:
            hit = await self.cache.get(key)
            if hit is not None:
                try:
                    result = unpack(hit)
                except (ValueError, OSError, KeyError):
                    pass  # a foreign or damaged entry is a miss
                else:
                    self.metrics.cache_hits.labels(operation).inc()
                    return result
            self.metrics.cache_misses.labels(operation).inc()
        if work <= self.settings.inline_work_elements:
            result = compute()
        else:
            result = await to_thread.run_sync(compute, limiter=self.compute_slots)
        if key is not None:
            value = pack(result)
            if len(value) <= self.settings.cache_max_value_bytes:
                await self.cache.set(key, value)
        return result
