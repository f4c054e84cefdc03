"""Prometheus metrics, in a registry of the app's own (several apps can live in one process, as in tests)."""

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401 - re-exported for the route
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
P_VALUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
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
        self.scored_points = Counter("vae_scored_points", "Points scored by /score against a reference, by model "
                                     "version.", ["model"], registry=self.registry)
        self.outliers = Counter("vae_outliers", "Points /score called outliers (p_value <= fpr), by model version.",
                                ["model"], registry=self.registry)
        self.p_values = Histogram("vae_score_p_value", "Conformal p-values /score answered, by model version: "
                                  "uniform on (0, 1] while the points are exchangeable with the reference's, skewed "
                                  "towards 0 when the input drifts.", ["model"], buckets=P_VALUE_BUCKETS,
                                  registry=self.registry)

        self.dropped = Counter("vae_http_requests_dropped", "Requests not answered with a result, by endpoint and "
                               "reason: shed (429, at capacity), timeout (503, past the deadline), cancelled "
                               "(the client went away).", ["endpoint", "reason"], registry=self.registry)
        self.in_flight_requests = Gauge("vae_http_requests_in_flight", "HTTP requests being served.",
                                        registry=self.registry)
        self.in_flight_work = Gauge("vae_work_in_flight", "Work units admitted and not yet done (rows through a "
                                    "model; bounded by VAE_MAX_INFLIGHT_WORK).", registry=self.registry)
        self.queue_depth = Gauge("vae_compute_queue_depth", "Computations waiting for a compute slot "
                                 "(VAE_COMPUTE_SLOTS).", registry=self.registry)

    def of(self, metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
        """metric.labels(*labels), kept: prometheus-client takes a lock and builds a key on every call. The labels
        are bounded sets (route templates, methods httptools parses, status codes, operations)."""
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[(metric, labels)] = metric.labels(*labels)
        return child

    def watch(self, in_flight_work: Callable[[], float], queue_depth: Callable[[], float]) -> None:
        """Gauges read when /metrics is scraped, from the data plane's own counters."""
        self.in_flight_work.set_function(in_flight_work)
        self.queue_depth.set_function(queue_depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
