"""The HTTP tier: the server's connection guard (http.server), the front every request passes (http.front:
access, http.security; budget and body limits, http.limits), the routes (http.routes, the data routes' direct
handlers: http.direct), the codecs of requests and replies (http.codecs, http.payloads), the one place that
writes a JSON error (http.replies), and the API's schemas (http.schemas). It parses, calls the data plane, and
replies; only this tier imports FastAPI."""
