"""The cache-or-compute step: a job's answer from the cache, or computed by the executor, checked to be finite,
and stored for the next request that asks the same.

Keys name the engine's cache identity (its files and its numerics), the operation, the job's parameters and its
rows (dataplane.cache.cache_key), so a changed model, or an instance that computes differently, is never
answered from another's entry.
"""

import numpy as np

from service.dataplane.cache import Cache, cache_key, pack, unpack
from service.dataplane.executor import Executor
from service.dataplane.jobs import Job
from service.errors import NonFiniteResult
from service.metrics import Metrics
from service.settings import Settings
from service.types import Result


class CachedResults:
    def __init__(self, cache: Cache, executor: Executor, settings: Settings, metrics: Metrics):
        self.cache, self.executor, self.metrics = cache, executor, metrics
        self.min_work = settings.cache_min_work  # cheaper results cost less to compute than to look up and store
        self.max_value_bytes = settings.cache_max_value_bytes

    async def answer(self, job: Job) -> Result:
        metrics = self.metrics
        metrics.of(metrics.batch_size, job.operation).observe(job.points)
        if not job.cacheable or job.work < self.min_work:
            return check_finite(await self.executor.run(job), job)
        arrays = () if job.rows is None else (job.rows,)
        key = cache_key(job.engine.cache_identity, job.operation, job.params, arrays)
        hit = await self.cache.get(key)
        if hit is not None:
            try:
                result = unpack(hit)
            except (ValueError, OSError, KeyError):
                pass  # a foreign or damaged entry is a miss
            else:
                metrics.of(metrics.cache_hits, job.operation).inc()
                return result
        metrics.of(metrics.cache_misses, job.operation).inc()
        result = check_finite(await self.executor.run(job), job)  # never cached when it is not
        value = pack(result)
        if len(value) <= self.max_value_bytes:
            await self.cache.set(key, value)
        return result


def check_finite(result: Result, job: Job) -> Result:
    """422 when the model produced NaN or infinity: JSON would carry null, and the cache would keep it."""
    for name, array in result.items():
        if array.dtype.kind != "f" or np.isfinite(array).all():  # one pass in the common case
            continue
        finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            fix = ("use a lower temperature" if job.operation == "sample" else
                   "the input lies far outside the data the model was trained on; send values in its range")
            raise NonFiniteResult(f"{name}[{row}]: model {job.engine.ref} produced NaN or infinity for this request "
                                  f"({int((~finite).sum())} of {len(array)} rows); {fix}")
    return result
