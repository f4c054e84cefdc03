"""Admission control: a bounded amount of work in flight per process; past it, shed at once with 429.

Work is counted in rows through a model (points encoded or decoded, draws, points x k importance samples),
not in requests: one /loglik with k = 10000 weighs what ten thousand single-point /encode calls do.
"""

from service.errors import RETRY_AFTER_S, Overloaded


class AdmissionControl:
    def __init__(self, max_work: int, retry_after_s: int = RETRY_AFTER_S):
        self.max_work, self.retry_after_s = max_work, retry_after_s
        self.in_flight = 0  # only touched on the event loop: no lock needed

    def acquire(self, work: int) -> None:
        """Hold `work` units until release(work), or raise Overloaded. A request larger than the whole bound is
        admitted only when nothing else runs (the per-request limits already cap it)."""
        if self.in_flight and self.in_flight + work > self.max_work:
            raise Overloaded(f"the service is at capacity ({self.in_flight} of {self.max_work} work units in "
                             f"flight, this request needs {work}; VAE_MAX_INFLIGHT_WORK); retry after "
                             f"{self.retry_after_s} s", retry_after_s=self.retry_after_s)
        self.in_flight += work

    def release(self, work: int) -> None:
        self.in_flight -= work
