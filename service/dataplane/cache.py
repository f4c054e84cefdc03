"""Result cache: Redis when configured, an in-process LRU otherwise. The cache never fails a request.

Keys name the model by its cache identity (the digest of its files as loaded, the scoring graph, the
precision, the execution provider), the operation, and a canonical form of the request, so a changed model,
or an instance that computes differently, can never be answered from another's entry. Values are the result
arrays, raw, behind a small JSON header that gives each one's dtype and shape (`pack`): no pickle, no zip,
nothing in a value is ever executed.
"""

import hashlib
import logging
import math
import struct
import time
from typing import Protocol

import cachetools
import numpy as np
import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
KEY_PREFIX = "vae:v2"  # v2: keys name the cache identity, not only the digest


def cache_key(model_identity: str, operation: str, params: dict, arrays: tuple[np.ndarray, ...] = ()) -> str:
    digest = hashlib.sha256(model_identity.encode())
    digest.update(orjson.dumps([operation, params], option=orjson.OPT_SORT_KEYS))
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return f"{KEY_PREFIX}:{operation}:{digest.hexdigest()}"


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    """A 4-byte header length, a JSON header {name: [dtype, shape]}, then the raw arrays in order."""
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    header = orjson.dumps({name: [a.dtype.str, a.shape] for name, a in arrays.items()})
    return b"".join([struct.pack("<I", len(header)), header, *(a.tobytes() for a in arrays.values())])


def unpack(value: bytes) -> dict[str, np.ndarray]:
    """The inverse of pack; raises ValueError for anything else."""
    try:
        (length,) = struct.unpack_from("<I", value)
        header = orjson.loads(value[4 : 4 + length])
        arrays, offset = {}, 4 + length
        for name, (dtype, shape) in header.items():
            kind, count = np.dtype(dtype), math.prod(shape)
            if kind.hasobject:
                raise ValueError("object arrays are not cache values")
            arrays[name] = np.frombuffer(value, dtype=kind, count=count, offset=offset).reshape(shape)
            offset += kind.itemsize * count
    except (struct.error, TypeError, orjson.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"not a cache value: {exc}") from None
    if offset != len(value):
        raise ValueError("not a cache value: trailing bytes")
    return arrays


class Cache(Protocol):
    backend: str

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes) -> None: ...
    async def status(self) -> dict: ...
    async def close(self) -> None: ...


class MemoryCache:
    backend = "memory"

    def __init__(self, max_entries: int, ttl_s: int, max_bytes: int):
        # Bounded in entries and in bytes at once: each entry is charged its size, but at least an equal share
        # of the byte budget, so neither bound can be passed (a count alone let 4096 large values pile up).
        share = max(1, max_bytes // max_entries)
        self._entries: cachetools.TTLCache = cachetools.TTLCache(
            maxsize=max_bytes, ttl=ttl_s, getsizeof=lambda value: max(len(value), share))

    async def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    async def set(self, key: str, value: bytes) -> None:
        try:
            self._entries[key] = value
        except ValueError:  # larger than the whole cache: not kept
            pass

    async def status(self) -> dict:
        return {"backend": self.backend, "state": "ok", "entries": len(self._entries),
                "bytes": sum(len(value) for value in self._entries.values())}

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """Every call has a short timeout and no retries; after a failure Redis is skipped for `retry_s`,
    then tried again, so the service reconnects by itself when Redis returns."""

    backend = "redis"

    def __init__(self, url: str, ttl_s: int, timeout_s: float, retry_s: float):
        self._client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                      retry=Retry(NoBackoff(), 0))
        self._ttl_s, self._retry_s = ttl_s, retry_s
        self._skip_until = 0.0
        self._error: str | None = None

    async def get(self, key: str) -> bytes | None:
        if time.monotonic() < self._skip_until:
            return None
        try:
            value = await self._client.get(key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._recovered()
        return value

    async def set(self, key: str, value: bytes) -> None:
        if time.monotonic() < self._skip_until:
            return
        try:
            await self._client.set(key, value, ex=self._ttl_s)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._recovered()

    async def status(self) -> dict:
        """Pings Redis now (whatever the back-off says), so readiness reflects the present."""
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc)
        else:
            self._recovered()
        state = {"backend": self.backend, "state": "degraded" if self._error else "ok"}
        if self._error:
            state["error"] = self._error
        return state

    async def close(self) -> None:
        await self._client.aclose()

    def _failed(self, exc: Exception) -> None:
        if self._error is None:
            log.warning("Redis unreachable, serving without the cache: %s", exc)
        self._error = f"{type(exc).__name__}: {exc}"
        self._skip_until = time.monotonic() + self._retry_s

    def _recovered(self) -> None:
        if self._error is not None:
            log.info("Redis reachable again; cache restored")
        self._error, self._skip_until = None, 0.0
