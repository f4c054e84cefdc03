"""Replies, and the one place that writes the contract's JSON error `{"detail": ...}`: every refusal, from the
connection guard's (http.server) to a route's, takes its body from error_body.

Domain errors (service.errors) carry their status; error_reply turns them into replies, for the direct handlers and
for FastAPI's exception handlers alike. Pydantic's field errors are 422s through validation_reply.
"""

from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import Scope, Send

from service.errors import DeadlineExceeded, Overloaded, RequestCancelled, ServiceError

JSON = "application/json"
CANCELLED = "cancelled"  # the client went away: its work was stopped and nobody reads an answer
DROPPED = {Overloaded: "shed", DeadlineExceeded: "timeout", RequestCancelled: CANCELLED}  # reasons, for the metrics


def error_body(detail: str) -> bytes:
    return orjson.dumps({"detail": detail})


@dataclass(slots=True)
class Reply:
    """A whole response, sent as two ASGI messages (fresh each time, so one Reply may be sent many times), or
    wrapped in a Starlette Response."""

    body: bytes
    media_type: str = JSON
    status: int = 200
    headers: dict[str, str] | None = None

    async def send(self, send: Send) -> int:
        """Send it; its status, for the metrics."""
        headers = [(b"content-type", self.media_type.encode()), (b"content-length", str(len(self.body)).encode())]
        headers += [(name.lower().encode(), value.encode()) for name, value in (self.headers or {}).items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})
        return self.status

    def response(self) -> Response:
        return Response(self.body, self.status, self.headers, self.media_type)


def protocol_error(reply: Reply) -> Reply:
    """A refusal in the Open Inference Protocol's form, `{"error": ...}`: the same status, headers and words."""
    return Reply(protocol_error_body(reply.body), reply.media_type, reply.status, reply.headers)


def protocol_error_body(body: bytes) -> bytes:
    """`{"detail": d}` -> `{"error": d}` (FastAPI's own 404, 405 and 422 included); any other body as it is."""
    try:
        content = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(content, dict) or "detail" not in content:
        return body
    detail = content["detail"]
    return orjson.dumps({"error": detail if isinstance(detail, str) else orjson.dumps(detail).decode()})


def json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(error_body(detail), status=status, headers=headers)


def error_reply(exc: ServiceError, scope: Scope) -> Reply:
    """A domain error as the contract's JSON; shed, timed-out and cancelled requests marked for the metrics."""
    if type(exc) in DROPPED:
        mark_dropped(scope, DROPPED[type(exc)])
    return json_error(exc.status_code, exc.detail, exc.headers)


def mark_dropped(scope: Scope, reason: str) -> None:
    """Why the request was not answered with a result (a DROPPED reason): the metrics count it apart."""
    scope.setdefault("state", {})["dropped"] = reason


def validation_reply(exc: RequestValidationError) -> Reply:
    """Pydantic's errors as one readable line per field, without echoing the (possibly huge) input."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"] if p not in ("body", "query"))
        problems.append(f"{location or 'body'}: {error['msg']}")
    return json_error(422, "; ".join(problems))


INTERNAL_ERROR = json_error(500, "internal error; the service's log has the details")


class ArrayJSONResponse(JSONResponse):
    """FastAPI's JSON response for the routes it answers, taking NumPy arrays as they are (orjson)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
