"""Who may call the service: the Host header (VAE_ALLOWED_HOSTS) and bearer API keys (VAE_API_KEYS), checked by
the front (http.front) before anything else. Both are off unless set.

Starlette's TrustedHostMiddleware answers in plain text and cuts an IPv6 literal at its first colon, so the
host check is written here. Everything a check needs is computed once, at start-up; per request the policy
reads two headers, looks the Host value up among those it has accepted before, and, with keys set,
compares the token with every key in constant time (hmac.compare_digest; a key's length is the one thing its
timing could tell, so long random keys are best).

Public without a key: /health/* and /v2/health/* (probes), the docs (/docs, its assets, /redoc, /openapi.json) and the explorer's
static files (/explore and /explore/*, which hold no data), because a browser cannot send a bearer token for a
page it opens; Swagger UI's Authorize button, and the explorer's key prompt, then add the key to the calls they
make. Everything else, /metrics and /models included, needs the key. The Host check covers every path.
"""

import hmac

from starlette.types import Scope

from service.http.replies import Reply, json_error
from service.http.routes.explorer import ASSETS, PAGE
from service.http.routes.health import PROBES
from service.http.routes.inference import PROTOCOL_PROBES
from service.settings import Settings

PUBLIC_PATHS = frozenset({"/openapi.json", "/docs", "/redoc", PAGE})
PUBLIC_PREFIXES = (PROBES, PROTOCOL_PROBES, "/docs/", ASSETS)
SCHEME_NAME = "bearer"
MAX_ACCEPTED_HOSTS = 64  # remembered raw Host values ("localhost:8000", "LOCALHOST", ...); more are parsed each time


FIX = "send the header `Authorization: Bearer <key>` with one of the keys in VAE_API_KEYS"
NO_KEY = json_error(401, f"authorization: no bearer key; {FIX}", {"WWW-Authenticate": "Bearer"})
WRONG_KEY = json_error(401, f"authorization: the bearer key is not valid; {FIX}",
                       {"WWW-Authenticate": 'Bearer error="invalid_token"'})


class AccessPolicy:
    """VAE_ALLOWED_HOSTS and VAE_API_KEYS in the form the checks use: lower-case host names and keys as bytes."""

    def __init__(self, allowed_hosts: list[str], api_keys: list[str]):
        self.check_hosts = bool(allowed_hosts)
        self.exact_hosts = frozenset(host.encode() for host in allowed_hosts if not host.startswith("*."))
        self.host_suffixes = tuple(host[1:].encode() for host in allowed_hosts if host.startswith("*."))
        self.keys = tuple(key.encode() for key in api_keys)
        self.open = not self.check_hosts and not self.keys
        self.accepted_hosts: set[bytes] = set()  # raw Host values seen and allowed, so most requests parse none

    @classmethod
    def from_settings(cls, settings: Settings) -> "AccessPolicy":
        return cls(settings.allowed_hosts, [key.get_secret_value() for key in settings.api_keys])

    def host_refusal(self, host: bytes | None) -> Reply | None:
        if not self.check_hosts or host in self.accepted_hosts:
            return None
        name = host_name(host) if host else None
        if name is not None and (name in self.exact_hosts or name.endswith(self.host_suffixes)):
            if len(self.accepted_hosts) < MAX_ACCEPTED_HOSTS:
                self.accepted_hosts.add(host)
            return None
        shown = repr(host.decode("latin-1")[:100]) if host else "missing"
        return json_error(400, f"host: {shown} is not a name this service answers to (VAE_ALLOWED_HOSTS); "
                               "call it by one of its allowed host names")

    def refusal(self, scope: Scope) -> Reply | None:
        """400 for a Host outside VAE_ALLOWED_HOSTS, then 401 for a missing or wrong key when VAE_API_KEYS is set."""
        if self.open:
            return None
        host = authorization = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"authorization":
                authorization = value
        return self.host_refusal(host) or self.key_refusal(scope["path"], authorization)

    def key_refusal(self, path: str, authorization: bytes | None) -> Reply | None:
        if not self.keys or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        scheme, _, token = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer":
            return NO_KEY
        token = token.strip()
        matched = False
        for key in self.keys:  # every key, no early exit: the time taken says nothing about which one matched
            matched |= hmac.compare_digest(token, key)
        return None if matched else WRONG_KEY


def host_name(host: bytes) -> bytes | None:
    """b'Example.COM:8000' -> b'example.com', b'[::1]:8000' -> b'::1'; None when it is not host[:port]."""
    host = host.lower()
    if host.startswith(b"["):
        name, _, rest = host[1:].partition(b"]")
        port = rest[1:] if rest.startswith(b":") else rest
    else:
        name, colon, port = host.rpartition(b":")
        if not colon:
            name, port = host, b""
    if port and not port.isdigit():
        return None
    return name[:-1] if name.endswith(b".") else name


def describe_bearer_keys(schema: dict) -> dict:
    """The OpenAPI document with the bearer scheme and a 401 on every operation that needs a key when keys are set.

    `{}` beside the scheme says that a service started without VAE_API_KEYS takes requests without one.
    """
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME_NAME] = {
        "type": "http", "scheme": "bearer",
        "description": "One of the keys in VAE_API_KEYS, when the service is started with keys; else none."}
    unauthorized = {
        "description": "VAE_API_KEYS is set and the request has no bearer key, or a wrong one.",
        "headers": {"WWW-Authenticate": {"description": 'Bearer, or Bearer error="invalid_token" for a wrong key.',
                                         "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for path, operations in schema.get("paths", {}).items():
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            continue
        for operation in operations.values():
            operation["security"] = [{SCHEME_NAME: []}, {}]
            operation.setdefault("responses", {})["401"] = unauthorized
    return schema
