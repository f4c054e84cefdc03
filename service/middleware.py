"""Pure ASGI middleware: request bodies (size, bytes in flight), the request's budget, per-endpoint metrics."""

import asyncio
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.budget import WorkBudget, current_budget
from service.metrics import Metrics
from service.routes.bodies import Reply

UNBUDGETED = ("/health/", "/metrics")  # answered at once, whatever the load: never shed, never timed out


async def send_json_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    await Reply(orjson.dumps({"detail": detail}), status=status, headers=headers).send(send)


class BodyLimits:
    """413 for a body over VAE_MAX_BODY_BYTES, told by Content-Length (before a byte of it is read) or counted
    while it streams in; 429 while the bodies of requests in flight hold VAE_MAX_INFLIGHT_BODY_BYTES, so that
    concurrent large bodies cannot exhaust memory (a parsed JSON body weighs several times its bytes).

    FastAPI's own `max_body_size` answers a declared oversize body with plain-text "Content Too Large",
    which cannot be changed; the contract's errors are JSON `{"detail": ...}` that say what to do.
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self.in_flight = 0  # bytes of the bodies of requests being served; event loop only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings = scope["app"].state.settings
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        if declared is not None and declared.isdigit():
            size = int(declared)
            if size > settings.max_body_bytes:
                return await self._too_large(send, settings.max_body_bytes)
            if not self._reserve(size, settings.max_inflight_body_bytes):
                return await self._busy(send, settings.max_inflight_body_bytes)
            try:
                return await self.app(scope, receive, send)  # the server enforces the declared length
            finally:
                self.in_flight -= size
        held = 0  # chunked: read it all, within the limits, then replay it
        try:
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return await self.app(scope, receive, send)
                chunk = message.get("body", b"")
                body += chunk
                more = message.get("more_body", False)
                if len(body) > settings.max_body_bytes:
                    return await self._too_large(send, settings.max_body_bytes)
                if not self._reserve(len(chunk), settings.max_inflight_body_bytes, held):
                    return await self._busy(send, settings.max_inflight_body_bytes)
                held += len(chunk)
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self.in_flight -= held

    def _reserve(self, size: int, limit: int, already_held: int = 0) -> bool:
        """Hold `size` more bytes unless that passes the limit; a request holding nothing yet is always let in
        when no other body is in flight, so one maximal body can always be served."""
        if self.in_flight - already_held > 0 and self.in_flight + size > limit:
            return False
        self.in_flight += size
        return True

    @staticmethod
    async def _too_large(send: Send, limit: int) -> None:
        await send_json_error(send, 413, f"request body: larger than {limit} bytes (VAE_MAX_BODY_BYTES); send "
                                         "fewer points per request")

    @staticmethod
    async def _busy(send: Send, limit: int) -> None:
        await send_json_error(send, 429, f"request body: the bodies of requests in flight already hold {limit} "
                                         "bytes (VAE_MAX_INFLIGHT_BODY_BYTES); retry after 1 s",
                              {"Retry-After": "1"})


class RequestBudget:
    """Gives each request a WorkBudget (service.budget): its deadline, VAE_REQUEST_TIMEOUT_S or less if the
    client asks with `X-Request-Timeout: <seconds>`, and the cancellation that a client's disconnect sets.
    A request whose client has gone ends without an answer (nobody would read it)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNBUDGETED):
            return await self.app(scope, receive, send)
        timeout = scope["app"].state.settings.request_timeout_s
        for name, value in scope["headers"]:
            if name == b"x-request-timeout":
                asked = _positive_seconds(value)
                if asked is None:
                    return await send_json_error(send, 400, "X-Request-Timeout header: must be a positive number "
                                                            f"of seconds (at most {timeout:g} here); or leave it out")
                timeout = min(timeout, asked)
        budget = WorkBudget(timeout, receive)
        token = current_budget.set(budget)
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not budget.cancelled.is_set():
                raise  # not ours (the server is shutting down)
            asyncio.current_task().uncancel()
            scope.setdefault("state", {})["dropped"] = "cancelled"
        finally:
            current_budget.reset(token)


def _positive_seconds(value: bytes) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None


class RequestMetrics:
    """Counts requests and times them per route template (not per raw path, which clients control); shed,
    timed-out and cancelled requests are counted apart (a cancelled one has status 499, as nginx counts it)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics
        self.in_flight = 0  # requests being served; event loop only, read by the gauge when /metrics is scraped
        metrics.in_flight_requests.set_function(lambda: self.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 0

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive, record_status)
        finally:
            self.in_flight -= 1
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            dropped = scope.get("state", {}).get("dropped")
            if dropped == "cancelled" and not status:
                status = 499
            metrics = self.metrics
            metrics.of(metrics.requests, endpoint, scope["method"], str(status or 500)).inc()
            metrics.of(metrics.latency, endpoint).observe(time.perf_counter() - start)
            if dropped is not None:
                metrics.of(metrics.dropped, endpoint, dropped).inc()
