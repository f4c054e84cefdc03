"""The data routes as direct handlers: each written once, as `(dataplane, Call) -> Reply`.

A handler is declared to FastAPI with `router.post(...)(direct(handler))`: FastAPI documents it (OpenAPI, /docs)
and serves it when the routers are mounted in a FastAPI app alone. Served by the service, the front (http.front)
finds the same route in `direct_routes` and calls the handler itself: FastAPI's request object, dependency
resolution, response classes and router layers cost several times a small model's run (docs/BENCHMARKS.md).
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.types import Scope

from service.dataplane.dataplane import DataPlane
from service.errors import ServiceError
from service.http.codecs import Call
from service.http.deps import DataPlaneDep
from service.http.replies import INTERNAL_ERROR, Reply, error_reply, validation_reply

log = logging.getLogger(__name__)
Handler = Callable[[DataPlane, Call], Awaitable[Reply]]


def direct(handler: Handler) -> Callable[..., Awaitable[Response]]:
    """The FastAPI endpoint of a direct handler: same name and docstring (so the same OpenAPI operation)."""

    async def endpoint(request: Request, dataplane: DataPlaneDep) -> Response:
        headers = request.headers
        call = Call.of(headers.get("content-type"), dict(request.query_params), await request.body(),
                       headers.get("accept"))
        return (await handler(dataplane, call)).response()

    endpoint.__name__, endpoint.__qualname__, endpoint.__doc__ = handler.__name__, handler.__qualname__, handler.__doc__
    endpoint.direct_handler = handler  # type: ignore[attr-defined]
    return endpoint


@dataclass(frozen=True, slots=True)
class DirectRoute:
    route: APIRoute  # what the metrics label the request with, as for FastAPI's routes
    handler: Handler


def direct_routes(routers: list[APIRouter]) -> dict[tuple[str, str], DirectRoute]:
    """(method, path) -> the direct route, for the routers' direct routes (included without a prefix)."""
    return {(method, route.path): DirectRoute(route, route.endpoint.direct_handler)
            for router in routers for route in router.routes
            if isinstance(route, APIRoute) and hasattr(route.endpoint, "direct_handler")
            for method in route.methods}


async def answer(handler: Handler, dataplane: DataPlane, call: Call, scope: Scope) -> Reply:
    """The handler's reply; a domain or validation error as its 4xx or 5xx; a bug as a logged JSON 500."""
    try:
        return await handler(dataplane, call)
    except ServiceError as exc:
        return error_reply(exc, scope)
    except RequestValidationError as exc:
        return validation_reply(exc)
    except Exception:  # a bug, not the client's doing: logged with its traceback, answered as JSON
        log.exception("%s %s failed", scope["method"], scope["path"])
        return INTERNAL_ERROR
