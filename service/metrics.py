"""Prometheus metrics, in a registry of the app's own (several apps can live in one process, as in tests)."""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the route

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vae_http_requests", "HTTP requests by endpoint, method and status.",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("vae_http_request_duration_seconds", "Time to answer, by endpoint.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.cache_hits = Counter("vae_cache_hits", "Results answered from the cache.", ["operation"],
                                  registry=self.registry)
        self.cache_misses = Counter("vae_cache_misses", "Cacheable results that had to be computed.",
                                    ["operation"], registry=self.registry)
        self.batch_size = Histogram("vae_batch_size", "Points (or draws) per request, by operation.",
                                    ["operation"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.coalesced = Histogram("vae_coalesced_requests", "Requests answered by one model run (dynamic "
                                   "batching), by operation.", ["operation"], buckets=BATCH_BUCKETS,
                                   registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
