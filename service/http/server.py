"""The HTTP/1.1 connection guard: uvicorn's httptools protocol with the limits it lacks.

uvicorn has no header-read timeout (a half-sent request holds its connection forever), and httptools no limit
on the size of the request line or headers (a 120 MB header took 18.7 s of CPU). Here, before the application
sees a request:
- its headers must arrive within VAE_HEADER_TIMEOUT_S of the connection opening or the previous answer, and
  its body within VAE_BODY_TIMEOUT_S of its headers: else 408 and the connection is closed (slowloris);
- its request target over VAE_MAX_URL_BYTES is a 414, its headers over VAE_MAX_HEADER_BYTES a 431, counted
  while they stream in, so at most one read beyond the limit is ever buffered.
Answers are JSON `{"detail": ...}` like every other error, and close the connection.

It subclasses uvicorn's httptools protocol and reads its internals (STATUS_LINE, the keep-alive handling, the
request cycle's message event), so it is written against one release: pyproject.toml pins uvicorn to
GUARDED_UVICORN, and a test fails when the installed uvicorn is another. The limits are the app's own settings,
handed in by `python -m service` (connection_guard).
"""

import asyncio
import functools
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.http.replies import error_body
from service.settings import Settings

GUARDED_UVICORN = "0.55.0"  # the uvicorn release this guard is written against (pinned in pyproject.toml)
GUARDED_HTTPTOOLS = "0.9.0"  # and the parser's
LINGER_S = 2.0  # how long a refused connection's late bytes are read and dropped before it is closed


@dataclass(frozen=True)
class ConnectionLimits:
    max_url_bytes: int
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "ConnectionLimits":
        return cls(settings.max_url_bytes, settings.max_header_bytes, settings.header_timeout_s,
                   settings.body_timeout_s)


def connection_guard(settings: Settings) -> functools.partial:
    """uvicorn's `http` protocol class, with these settings' limits (picklable, for worker processes)."""
    return functools.partial(GuardedHttpToolsProtocol, limits=ConnectionLimits.from_settings(settings))


class _Refused(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, limits: ConnectionLimits, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_url, self.max_header = limits.max_url_bytes, limits.max_header_bytes
        self.header_timeout, self.body_timeout = limits.header_timeout_s, limits.body_timeout_s
        self.in_headers = True  # reading a request line and headers (or waiting for the first byte of one)
        self.header_bytes = 0  # bytes received while reading the current request's head
        self.url_bytes = 0
        self.refused = False
        # One lazy timer per connection: arming a deadline per request only moves `deadline`; the timer, when it
        # fires early, sleeps again until the deadline (a timer created and cancelled twice per request cost more).
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when the timer fires: never after `deadline`
        self.deadline: float | None = None
        self.deadline_reason: tuple[str, float, str] = ("", 0.0, "")

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, "request headers", "VAE_HEADER_TIMEOUT_S")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's own, plus the limits: a refusal raised inside a parser callback arrives here wrapped."""
        if self.refused:
            return
        self._unset_keepalive_if_required()
        if self.in_headers:
            self.header_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if self.in_headers:
                self._check_head_bytes()
        except _Refused as refusal:
            self._refuse(refusal.status, refusal.detail)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            refusal = exc.__context__ or exc.__cause__
            if isinstance(refusal, _Refused):
                self._refuse(refusal.status, refusal.detail)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self._refuse(400, "request: not valid HTTP/1.1; send a well-formed request")

    # parser callbacks (httptools calls them from inside feed_data)
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_headers, self.url_bytes = True, 0
        if self.deadline is None:  # a request after a keep-alive pause: its headers get the full allowance
            self._arm(self.header_timeout, "request headers", "VAE_HEADER_TIMEOUT_S")

    def on_url(self, url: bytes) -> None:
        self.url_bytes += len(url)
        if self.url_bytes > self.max_url:
            raise self._target_too_long()
        super().on_url(url)

    def on_headers_complete(self) -> None:
        self._check_head()
        self.in_headers = False
        self._disarm()
        self._arm(self.body_timeout, "request body", "VAE_BODY_TIMEOUT_S")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.header_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.in_headers, self.header_bytes = True, 0  # uvicorn's keep-alive timer closes an idle connection

    def _check_head_bytes(self) -> None:
        """While the head streams in: the bytes received so far, minus the request target."""
        if self.url_bytes > self.max_url:
            raise self._target_too_long()
        if self.header_bytes - self.url_bytes > self.max_header + 1024:  # 1 KiB for the request line's rest
            raise self._headers_too_large()

    def _check_head(self) -> None:
        """Once the head is complete: its exact size (the same read may have carried part of the body)."""
        if self.url_bytes > self.max_url:
            raise self._target_too_long()
        if sum(len(name) + len(value) + 4 for name, value in self.headers) > self.max_header:
            raise self._headers_too_large()

    def _target_too_long(self) -> "_Refused":
        return _Refused(414, f"request target: longer than {self.max_url} bytes (VAE_MAX_URL_BYTES); send the data "
                             "in a POST body")

    def _headers_too_large(self) -> "_Refused":
        return _Refused(431, f"request headers: more than {self.max_header} bytes (VAE_MAX_HEADER_BYTES)")

    def _arm(self, seconds: float, what: str, setting: str) -> None:
        self.deadline = self.loop.time() + seconds
        self.deadline_reason = (what, seconds, setting)
        if self.timer is None or self.timer_at > self.deadline:
            self._schedule(self.deadline)

    def _disarm(self) -> None:
        self.deadline = None  # the timer, if it fires, finds no deadline and stops

    def _schedule(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = self.loop.call_at(when, self._tick), when

    def _tick(self) -> None:
        self.timer = None
        if self.deadline is None:
            return
        if self.loop.time() < self.deadline:  # armed again since: sleep until the deadline now in force
            self._schedule(self.deadline)
            return
        self.deadline = None
        self._expired(*self.deadline_reason)

    def _expired(self, what: str, seconds: float, setting: str) -> None:
        if self.cycle is not None and not self.cycle.response_complete and not self.in_headers:
            if self.cycle.response_started:  # the app answers already: only the rest of the body is late
                self.transport.close()
                return
            self.cycle.disconnected = True  # the app, if it waits for the body, sees the client gone
            self.cycle.message_event.set()
        elif self.in_headers and self.header_bytes == 0 and self.cycle is not None:
            self.transport.close()  # an idle keep-alive connection: nothing to answer
            return
        self._refuse(408, f"{what}: not received within {seconds:g} s ({setting}); send the request at once")

    def _refuse(self, status: int, detail: str) -> None:
        self.refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        body = error_body(detail)
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: application/json\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body]))
        # A lingering close: a client still sending would otherwise get a reset and lose the answer. Send FIN
        # after the answer, discard what still arrives (data_received drops it), and close shortly after.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

