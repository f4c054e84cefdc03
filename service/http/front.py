"""The ASGI app the server runs (service.app:app): every HTTP request passes the same few steps, in order, each
one object's concern, then reaches its handler.

    access    Host and API key (http.security): 400, 401
    body      read whole within the limits (http.limits): 413, 429; a client gone before it is not answered
    budget    the request's deadline, from its arrival (http.limits): 400 for a bad X-Request-Timeout; none for
              /health/* and /metrics
    handler   a data route's direct handler (http.direct), or FastAPI for the other routes, the body replayed
    metrics   counted and timed by route template, whatever the answer (service.metrics)

The data routes skip FastAPI's per-request machinery: its entry (whose telemetry hook reads the environment on
every request), its router, request, dependency and response layers. Every other attribute is the FastAPI
app's (state, openapi(), routes).
"""

import asyncio
import time

from fastapi import APIRouter, FastAPI
from starlette.types import Message, Receive, Scope, Send

from service.dataplane.budget import WorkBudget, current_budget
from service.errors import RequestCancelled
from service.http.codecs import Call
from service.http.direct import answer, direct_routes
from service.http.limits import GONE, BodyLimits, request_timeout
from service.http.replies import CANCELLED, Reply, mark_dropped, protocol_error, protocol_error_body
from service.http.routes.health import METRICS, PROBES
from service.http.routes.inference import PROTOCOL, PROTOCOL_PROBES, answer_inference, inference_route
from service.http.security import AccessPolicy
from service.metrics import Metrics
from service.settings import Settings

UNBUDGETED = (PROBES, PROTOCOL_PROBES, METRICS)  # answered at once, whatever the load: never shed, never timed out


class ServiceApp:
    def __init__(self, api: FastAPI, direct_routers: list[APIRouter], metrics: Metrics):
        self.api, self.metrics = api, metrics
        self.routes = direct_routes(direct_routers)
        self.in_flight = 0  # requests being served; event loop only, read by the gauge when /metrics is scraped
        metrics.in_flight_requests.set_function(lambda: self.in_flight)
        # Set by start(), in the app's lifespan, before the server sends any request
        self.settings: Settings | None = None
        self.access: AccessPolicy | None = None
        self.bodies: BodyLimits | None = None

    def start(self, settings: Settings) -> None:
        self.settings = settings
        self.access = AccessPolicy.from_settings(settings)
        self.bodies = BodyLimits(settings)

    def begin_stopping(self) -> None:
        """SIGTERM came (http.shutdown): /health/ready answers 503 from now on, every other route as before."""
        self.api.state.stopping = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan (and websockets, which no route takes)
            return await self.api(scope, receive, send)
        scope["app"] = self.api  # what Starlette reads the app's state from
        start, status = time.perf_counter(), 0
        self.in_flight += 1
        try:
            status = await self._serve(scope, receive, send)
        finally:
            self.in_flight -= 1
            self._count(scope, status, time.perf_counter() - start)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> int:
        """The steps in order; the status sent (0 when nothing was)."""
        arrival = time.monotonic()
        refusal = self.access.refusal(scope)
        if refusal is not None:
            return await _refuse(refusal, scope, send)
        body, held = await self.bodies.read(scope, receive)
        try:
            if body is GONE:
                mark_dropped(scope, CANCELLED)
                return 0
            if isinstance(body, Reply):
                return await _refuse(body, scope, send)
            budget = None
            if not scope["path"].startswith(UNBUDGETED):
                timeout = request_timeout(scope, self.settings)
                if isinstance(timeout, Reply):
                    return await _refuse(timeout, scope, send)
                budget = WorkBudget(timeout, receive, arrival)  # the deadline counts from the request's arrival
            token = current_budget.set(budget)
            try:
                found = self.routes.get((scope["method"], scope["path"]))
                if found is not None:
                    scope["route"] = found.route  # what the metrics label it with, as FastAPI's router does
                    call = Call.from_scope(scope, body)
                    return await (await answer(found.handler, self.api.state.dataplane, call, scope)).send(send)
                inference = inference_route(scope["path"]) if scope["method"] == "POST" else None
                if inference is not None:
                    scope["route"], model_name, version = inference
                    reply = await answer_inference(self.api.state.dataplane, scope, body, model_name, version)
                    return await reply.send(send)
                return await self._fastapi(scope, _replay(body, receive), send)
            except asyncio.CancelledError:
                if budget is None or not budget.cancelled.is_set():
                    raise  # not ours (the server is shutting down)
                asyncio.current_task().uncancel()  # the client went away and its work was stopped
                mark_dropped(scope, CANCELLED)
                return 0
            finally:
                current_budget.reset(token)
        finally:
            self.bodies.release(held)

    async def _fastapi(self, scope: Scope, receive: Receive, send: Send) -> int:
        status = 0
        protocol = scope["path"].startswith(PROTOCOL)
        held: Message | None = None  # an error's start under /v2, sent with its body once that is rewritten

        async def record_status(message: Message) -> None:
            nonlocal status, held
            if message["type"] == "http.response.start":
                status = message["status"]
                if protocol and status >= 400:
                    held = message
                    return
            elif held is not None:
                start, held = held, None
                if not message.get("more_body", False):
                    message = {**message, "body": protocol_error_body(message.get("body", b""))}
                    start = {**start, "headers": [(name, value) for name, value in start["headers"]
                                                  if name != b"content-length"]
                             + [(b"content-length", str(len(message["body"])).encode())]}
                await send(start)
            await send(message)

        await self.api(scope, receive, record_status)
        return status

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        """Per route template (not the raw path, which clients control); shed, timed-out and cancelled requests
        are counted apart."""
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        dropped = scope.get("state", {}).get("dropped")
        if dropped == CANCELLED and not status:
            status = RequestCancelled.status_code  # 499, as nginx counts it
        metrics = self.metrics
        metrics.of(metrics.requests, endpoint, scope["method"], str(status or 500)).inc()
        metrics.of(metrics.latency, endpoint).observe(seconds)
        if dropped is not None:
            metrics.of(metrics.dropped, endpoint, dropped).inc()

    def __getattr__(self, name: str):
        return getattr(self.api, name)


async def _refuse(refusal: Reply, scope: Scope, send: Send) -> int:
    """A refusal before any route ran; under /v2 in the Open Inference Protocol's form, {"error": ...}."""
    if scope["path"].startswith(PROTOCOL):
        refusal = protocol_error(refusal)
    return await refusal.send(send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, as one message; then the real receive (which says http.disconnect when the client leaves)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

