"""The stop on SIGTERM, in two steps: out of the load balancer's rotation, then uvicorn's drain.

A balancer, or Kubernetes' endpoints, learns that a replica is stopping only some time after the replica does
(a failed health check, an endpoint update reaching every node). A server that stops accepting at once on
SIGTERM refuses the connections still sent its way in that window: failed requests on every rolling update.
So on SIGTERM the server first only *says* it is stopping, /health/ready answering 503 while every route serves
as usual, for VAE_DRAIN_READY_DELAY_S; then it stops accepting and drains as before (VAE_DRAIN_TIMEOUT_S).
A second SIGTERM, or SIGINT (Ctrl-C), ends the delay at once.

It subclasses uvicorn's Server and reads two of its internals (handle_exit, the signal handler, and on_tick,
its 0.1 s main-loop tick), written against the uvicorn release pinned with the connection guard (server.py).
"""

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

log = logging.getLogger("service")


class DelayedDrainServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready_delay_s: float, on_stopping: Callable[[], None]):
        super().__init__(config)
        self.ready_delay_s = ready_delay_s
        self.on_stopping = on_stopping  # makes /health/ready answer 503
        self.drain_at: float | None = None  # monotonic time the drain starts, once SIGTERM came

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.ready_delay_s > 0 and self.drain_at is None and not self.should_exit:
            self._captured_signals.append(sig)  # uvicorn raises it again once drained (main's handler absorbs it)
            self.drain_at = time.monotonic() + self.ready_delay_s
            self.on_stopping()
            log.info("SIGTERM: /health/ready answers 503; still serving for %g s (VAE_DRAIN_READY_DELAY_S), "
                     "then draining", self.ready_delay_s)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_at is not None and time.monotonic() >= self.drain_at:
            self.should_exit = True
        return await super().on_tick(counter)
