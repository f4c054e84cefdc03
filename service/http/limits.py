"""What a request may hold before its handler runs: its body's bytes (VAE_MAX_BODY_BYTES, and the bodies of
all requests in flight, VAE_MAX_INFLIGHT_BODY_BYTES), and its deadline (VAE_REQUEST_TIMEOUT_S, or less if the
client asks with `X-Request-Timeout: <seconds>`).

FastAPI's own `max_body_size` answers a declared oversize body with plain-text "Content Too Large", which
cannot be changed; the contract's errors are JSON `{"detail": ...}` that say what to do.
"""

from starlette.types import Receive, Scope

from service.errors import RETRY_AFTER_S
from service.http.replies import Reply, json_error
from service.settings import Settings

NO_BODY = b""
GONE = None  # the client went away before its body arrived: nobody reads an answer


class BodyLimits:
    """413 for a body over VAE_MAX_BODY_BYTES, told by Content-Length (before a byte of it is read) or counted
    while it streams in; 429 while the bodies of requests in flight hold VAE_MAX_INFLIGHT_BODY_BYTES, so that
    concurrent large bodies cannot exhaust memory (a parsed JSON body weighs several times its bytes)."""

    def __init__(self, settings: Settings):
        self.max_body, self.max_in_flight = settings.max_body_bytes, settings.max_inflight_body_bytes
        self.in_flight = 0  # bytes of the bodies of requests being served; event loop only
        self.too_large = json_error(413, f"request body: larger than {self.max_body} bytes (VAE_MAX_BODY_BYTES); "
                                         "send fewer points per request")
        self.busy = json_error(429, f"request body: the bodies of requests in flight already hold "
                                    f"{self.max_in_flight} bytes (VAE_MAX_INFLIGHT_BODY_BYTES); retry after "
                                    f"{RETRY_AFTER_S} s", {"Retry-After": str(RETRY_AFTER_S)})

    async def read(self, scope: Scope, receive: Receive) -> tuple[bytes | Reply | None, int]:
        """(the whole body, a refusal, or GONE; the bytes now held, which the caller must release)."""
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None  # anything else: counted as it comes
                break
        held = 0
        if declared is not None:
            if declared > self.max_body:
                return self.too_large, 0
            if not self._reserve(declared, 0):
                return self.busy, 0
            held = declared  # the server enforces the declared length
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return GONE, held
            chunk = message.get("body", NO_BODY)
            chunks.append(chunk)
            total += len(chunk)
            if declared is None:  # chunked, or a length that is not a number: counted as it comes
                if total > self.max_body:
                    return self.too_large, held
                if not self._reserve(len(chunk), held):
                    return self.busy, held
                held += len(chunk)
            if not message.get("more_body", False):
                return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), held

    def release(self, held: int) -> None:
        self.in_flight -= held

    def _reserve(self, size: int, already_held: int) -> bool:
        """Hold `size` more bytes unless that passes the limit; a request holding nothing yet is always let in
        when no other body is in flight, so one maximal body can always be served."""
        if self.in_flight - already_held > 0 and self.in_flight + size > self.max_in_flight:
            return False
        self.in_flight += size
        return True


def request_timeout(scope: Scope, settings: Settings) -> float | Reply:
    """The request's deadline in seconds from now, or a 400 for an X-Request-Timeout that is not a number."""
    timeout = settings.request_timeout_s
    for name, value in scope["headers"]:
        if name == b"x-request-timeout":
            asked = _positive_seconds(value)
            if asked is None:
                return json_error(400, "X-Request-Timeout header: must be a positive number of seconds (at most "
                                       f"{timeout:g} here); or leave it out")
            timeout = min(timeout, asked)
    return timeout


def _positive_seconds(value: bytes) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None
