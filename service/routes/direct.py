"""The direct lane: the data routes answered from the raw ASGI scope, without FastAPI's per-request machinery.

A data route is written once, as a handler `(service, Call) -> Reply`, and declared to FastAPI with
`@router.post(...)(direct(handler))`: FastAPI documents it (OpenAPI, /docs) and serves it when the routers are
mounted in a FastAPI app alone. Served by service.app, the DirectLane middleware answers the same route itself:
the request object, dependency resolution, response classes and the router's layers cost several times a
small model's run (docs/BENCHMARKS.md), and the lane skips them. Everything in front of it (metrics, access,
body limits, the request's budget) applies to both paths alike; other routes go on to FastAPI.
"""

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import DeadlineExceeded, Overloaded, RequestCancelled, ServiceError
from service.operations import VaeService
from service.routes.bodies import Call, Reply
from service.routes.deps import ServiceDep

log = logging.getLogger(__name__)
Handler = Callable[[VaeService, Call], Awaitable[Reply]]
DROPPED = {Overloaded: "shed", DeadlineExceeded: "timeout", RequestCancelled: "cancelled"}


def direct(handler: Handler) -> Callable[..., Awaitable[Response]]:
    """The FastAPI endpoint of a direct handler: same name and docstring (so the same OpenAPI operation)."""

    async def endpoint(request: Request, service: ServiceDep) -> Response:
        headers = request.headers
        call = Call.of(headers.get("content-type"), dict(request.query_params), await request.body(),
                       headers.get("accept"))
        return (await handler(service, call)).response()

    endpoint.__name__, endpoint.__qualname__, endpoint.__doc__ = handler.__name__, handler.__qualname__, handler.__doc__
    endpoint.direct_handler = handler  # type: ignore[attr-defined]
    return endpoint


def error_reply(exc: ServiceError, scope: Scope) -> Reply:
    """A domain error as the contract's JSON; shed, timed-out and cancelled requests marked for the metrics."""
    if type(exc) in DROPPED:
        scope.setdefault("state", {})["dropped"] = DROPPED[type(exc)]
    return Reply(_detail(exc.detail), status=exc.status_code, headers=exc.headers)


def validation_reply(exc: RequestValidationError) -> Reply:
    """Pydantic's errors as one readable line per field, without echoing the (possibly huge) input."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"] if p not in ("body", "query"))
        problems.append(f"{location or 'body'}: {error['msg']}")
    return Reply(_detail("; ".join(problems)), status=422)


def _detail(text: str) -> bytes:
    return orjson.dumps({"detail": text})


class DirectLane:
    """Pure ASGI middleware, innermost: a request for a direct route is answered here; others pass on."""

    def __init__(self, app: ASGIApp, routers: list[APIRouter]):
        """routers: those whose direct routes the lane answers; the app includes them without a prefix."""
        self.app = app
        self.routes = {
            (method, route.path): (route, route.endpoint.direct_handler)
            for router in routers for route in router.routes
            if isinstance(route, APIRoute) and hasattr(route.endpoint, "direct_handler")
            for method in route.methods
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        found = self.routes.get((scope["method"], scope["path"]))
        if found is None:
            return await self.app(scope, receive, send)
        route, handler = found
        scope["route"] = route  # what RequestMetrics labels the request with, as for FastAPI's routes
        body = await _read_body(receive)
        if body is None:  # the client left before its body arrived: nobody reads an answer
            scope.setdefault("state", {})["dropped"] = "cancelled"
            return
        content_type = accept = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
        query = scope["query_string"]
        call = Call.of(content_type, dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {},
                       body, accept)
        try:
            answer = await handler(scope["app"].state.service, call)
        except ServiceError as exc:
            answer = error_reply(exc, scope)
        except RequestValidationError as exc:
            answer = validation_reply(exc)
        except Exception:  # a bug, not the client's doing: logged with its traceback, answered as JSON
            log.exception("%s %s failed", scope["method"], scope["path"])
            answer = Reply(_detail("internal error; the service's log has the details"), status=500)
        await answer.send(send)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (BodyLimits in front has bounded it), or None when the client disconnected."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
