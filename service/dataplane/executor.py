"""Where a job's computation runs: admitted or shed, then inline on the event loop, coalesced with other
requests for the same run (dataplane.batching), or alone in a worker thread within the request's deadline.

    admit work (past VAE_MAX_INFLIGHT_WORK: 429)
      coalesced  when the job has a run and its values are few enough for the batching policy (VAE_BATCHING):
                 one model run over several requests' rows, never stopped for one client (no should_stop)
      inline     at most VAE_INLINE_WORK_ELEMENTS values: a thread hop would cost more than the work
      thread     the rest, in one of VAE_COMPUTE_SLOTS worker threads, stopped between slices by the request's
                 budget (deadline, disconnect) and answered 503 at the deadline even if its thread is still busy
"""

import math

from anyio import CapacityLimiter, fail_after, get_cancelled_exc_class, to_thread

from modelrepo.stopping import WorkStopped
from service.dataplane.admission import AdmissionControl
from service.dataplane.batching import DynamicBatcher
from service.dataplane.budget import WorkBudget, budget
from service.dataplane.jobs import Job
from service.metrics import Metrics
from service.settings import Settings
from service.types import CUDA_DEVICE, Result


class Executor:
    def __init__(self, settings: Settings, metrics: Metrics):
        self.inline_values = settings.inline_work_elements
        self.batching = settings.batching
        self.compute_slots = CapacityLimiter(settings.compute_slots)  # bounds threads and memory in use
        self.admission = AdmissionControl(settings.max_inflight_work)  # bounds work admitted: past it, 429
        self.batcher = DynamicBatcher(
            settings.batch_max_points, settings.batch_wait_ms / 1000, settings.inline_work_elements,
            lambda function: to_thread.run_sync(function, limiter=self.compute_slots),
            lambda operation, requests: metrics.of(metrics.coalesced, operation).observe(requests))

    def coalesce_up_to(self, device: str) -> float:
        """The most values a job may touch and still share a run (VAE_BATCHING): every job with `on`, or with
        `auto` on CUDA (a run's launch costs far more than a row); with `auto` on the CPU those small enough to
        run inline, whose per-call costs one run amortises (larger ones run alone, each within its deadline)."""
        if self.batching == "off":
            return -1
        if self.batching == "on" or device == CUDA_DEVICE:
            return math.inf
        return self.inline_values

    async def run(self, job: Job) -> Result:
        self.admission.acquire(job.work)  # the work is held (not admitted: 429) until the answer is there
        try:
            if job.run is not None and job.values <= self.coalesce_up_to(job.engine.device):
                return await self.batcher.submit((job.engine, job.run), job.run[0], job.rows,
                                                 lambda rows: job.compute(rows, None), job.values // job.points)
            return await self._alone(job, budget())
        finally:
            self.admission.release(job.work)

    async def _alone(self, job: Job, current: WorkBudget) -> Result:
        def run() -> Result:  # a request past its deadline or abandoned (while it waited for a slot) never starts
            if current.should_stop():
                raise current.stop_error()
            try:
                return job.compute(job.rows, current.should_stop)
            except WorkStopped:  # stopped between two slices: the request's own reason (deadline or disconnect)
                raise current.stop_error() from None

        if job.values <= self.inline_values:
            return run()
        async with current.watching_disconnect():
            try:
                with fail_after(max(0.0, current.remaining())):
                    return await to_thread.run_sync(run, limiter=self.compute_slots, abandon_on_cancel=True)
            except TimeoutError:
                deadline = current.stop_error()  # the deadline's answer, before the flag below would say "cancelled"
                current.cancelled.set()  # the abandoned thread stops at its next slice
                raise deadline from None
            except get_cancelled_exc_class():
                current.cancelled.set()
                raise
