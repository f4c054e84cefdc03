"""What one request may spend: a deadline, and a cancellation flag the worker threads read between slices.

The data plane reads the current request's budget from a context variable that the HTTP tier sets for each
request (http.front), so deep loops (the /loglik slices) can stop without every signature in between carrying it.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar

from service.errors import DeadlineExceeded, RequestCancelled, ServiceError

Receive = Callable[[], Awaitable[dict]]  # an ASGI receive: it says http.disconnect when the client leaves


class CancelFlag:
    """Set once, read from any thread between slices of work; nobody waits on it, so no lock is needed (an
    attribute write is atomic in CPython) and it costs a fraction of a threading.Event, once per request."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class WorkBudget:
    def __init__(self, timeout_s: float, receive: Receive | None = None, start: float | None = None):
        """start: when the request arrived (time.monotonic()); default now."""
        self.timeout_s = timeout_s
        self.deadline = (time.monotonic() if start is None else start) + timeout_s
        self.cancelled = CancelFlag()  # set when the client has gone, or the server stops waiting
        self._receive = receive

    def tighten(self, timeout_s: float) -> None:
        """At most `timeout_s` from the request's arrival (a protocol's own timeout parameter); never longer."""
        deadline = self.deadline - self.timeout_s + timeout_s
        if deadline < self.deadline:
            self.deadline, self.timeout_s = deadline, timeout_s

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def should_stop(self) -> bool:
        """True once the client has gone or the deadline has passed: asked between slices, in worker threads too."""
        return self.cancelled.is_set() or time.monotonic() > self.deadline

    def stop_error(self) -> ServiceError:
        """Why the work stopped, as the answer to give: the client gone (499), else the deadline (503)."""
        if self.cancelled.is_set():
            return RequestCancelled("the client closed the connection; the work was stopped")
        return DeadlineExceeded(f"the request ran past its deadline of {self.timeout_s:g} s and was stopped "
                                "(VAE_REQUEST_TIMEOUT_S, or the X-Request-Timeout header); send less work or retry "
                                "when the service is less busy")

    @contextlib.asynccontextmanager
    async def watching_disconnect(self) -> AsyncIterator[None]:
        """While the block runs, a client that disconnects cancels it (and any thread checking this budget).

        Only for work that waits (a queue, a thread): the body must have been read already.
        """
        if self._receive is None:
            yield
            return
        task = asyncio.current_task()
        watcher = asyncio.ensure_future(self._watch(task))
        try:
            yield
        finally:
            watcher.cancel()

    async def _watch(self, task: asyncio.Task) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.cancelled.set()
                task.cancel()
                return


current_budget: ContextVar[WorkBudget | None] = ContextVar("vae_request_budget", default=None)


def budget() -> WorkBudget:
    """The current request's budget; outside a request (tests calling the data plane directly), a generous one."""
    return current_budget.get() or WorkBudget(timeout_s=3600.0)
