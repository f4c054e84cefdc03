"""The service's one settings class. Every field reads from the environment with the VAE_ prefix."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAE_", env_file=None, extra="forbid")

    model_repository: Path = Field(PROJECT_ROOT / "models", description="Folder of <name>/<version>/ models.")
    default_model: str = Field("digits", description="Model that answers when a request names none.")
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto: CUDA when ONNX Runtime can use it, else CPU; cuda: refuse to start without it."
    )
    intra_op_threads: int = Field(
        1, ge=0, description="ONNX Runtime threads per session run; 0 lets it choose (one per core, spinning). "
        "1 leaves the cores to VAE_COMPUTE_SLOTS concurrent runs and the event loop, so the service keeps "
        "answering under load.")
    redis_url: str | None = Field(None, description="redis://host:port/db; unset: an in-process LRU cache.")
    cache_ttl_s: int = Field(3600, ge=1, description="Lifetime of a cache entry, in seconds.")
    cache_max_entries: int = Field(4096, ge=1, description="Capacity of the in-process cache, in entries.")
    cache_max_bytes: int = Field(256 << 20, ge=1 << 20, description="Capacity of the in-process cache, in bytes "
                                 "of cached values (both bounds hold).")
    cache_max_value_bytes: int = Field(8 << 20, ge=1024, description="Larger results are not cached.")
    cache_min_work: int = Field(
        256, ge=0, description="Results that pass fewer rows than this through a model (points encoded or "
        "decoded, draws, points x k importance samples) are computed every time, never cached: looking them up "
        "and storing them (a Redis round trip each) costs more than the model does. 0: cache every result.")
    redis_timeout_s: float = Field(0.25, gt=0, description="Socket timeout of every Redis call.")
    redis_retry_s: float = Field(1.0, ge=0, description="After a Redis failure, skip Redis this long.")
    max_batch: int = Field(1024, ge=1, description="Most data points (or latents) in one request.")
    max_k: int = Field(10000, ge=1, description="Most importance samples per data point in /loglik.")
    default_fpr: float = Field(0.01, gt=0, lt=1, description="/score's false-positive rate when a request sends no "
                               "`fpr`: a point is an outlier when its conformal p-value against the reference is "
                               "at most this.")
    max_loglik_samples: int = Field(2_000_000, ge=1, description="Most data points x k in one /loglik request.")
    max_encode_samples: int = Field(1000, ge=0, description="Most latent samples per point in /encode.")
    max_encode_total_samples: int = Field(100_000, ge=1, description="Most points x samples in one /encode.")
    max_sample_n: int = Field(1024, ge=1, description="Most draws in one /sample request.")
    max_body_bytes: int = Field(32 << 20, ge=1024, description="Largest request body, in bytes.")
    work_elements: int = Field(1 << 22, ge=1024, description="Samples x data values alive at once in /loglik.")
    cuda_work_elements: int = Field(
        1 << 26, ge=1024, description="The same bound for the fused graph on CUDA, where large runs pay off.")
    loglik_graph: Literal["fused", "separate"] = Field(
        "fused", description="/loglik on one fused graph per model (encoder, decoder, likelihood and log-mean-exp "
        "in float32 on the device; a model whose graphs cannot be joined falls back, and GET /models says why), "
        "or on the two graphs with the likelihood in float64 on the host (slower; docs/BENCHMARKS.md).")
    enumeration_limit: int = Field(
        4096, ge=0, description="/loglik on a model with categorical latents (G groups of C categories) sums over "
        "every z exactly (`method: exact`, stderr 0) when it has at most this many configurations C^G, and "
        "importance-samples k of them from q(z|x) above it (`method: importance`). The exact sum decodes C^G "
        "latents per request, whatever k says. 0: always importance-sample.")
    loglik_precision: Literal["fp32", "fp16"] = Field(
        "fp32", description="Arithmetic of the decoder inside the fused graph; fp16 is faster on GPUs and less "
        "exact (docs/BENCHMARKS.md gives the difference in nats).")
    kernel_tier: Literal["auto", "on", "off"] = Field(
        "auto", description="/loglik on Triton kernels derived from each model's ONNX graphs (MLP encoders and "
        "decoders; the decoder's last layer fused with the likelihood), verified against the float32 graphs at "
        "load; a model they do not fit, or that fails the check, stays on ONNX Runtime and GET /models says why. "
        "auto: when torch, triton (the `gpu` extra) and a CUDA device are there; on: also in Triton's interpreter "
        "on the CPU (slow: for tests); off: never.")
    kernel_precision: Literal["auto", "fp16", "fp16-last-fp32", "bf16", "fp32"] = Field(
        "auto", description="Matmul operands of the kernel tier's decoder (accumulated in float32; the first layer "
        "reads z in float32; the encoder and the log-weights are float32 and float64 whatever this says). "
        "fp16-last-fp32: fp16 hidden layers, the last layer (fused with the likelihood) in fp32. auto: the first "
        "of fp16, fp16-last-fp32, fp32 that passes the check at load (docs/BENCHMARKS.md, kernel tier precision).")
    kernel_tolerance_nats: float = Field(
        2e-3, ge=0, description="Largest difference in nats per point (loglik) between the kernel tier and "
        "the float32 ONNX graphs at load, on points drawn from the model; over it the model stays on ONNX Runtime.")
    compute_slots: int = Field(2, ge=1, description="Computations run at once in worker threads; more requests "
                               "wait their turn (within their deadline).")
    max_inflight_work: int = Field(
        2_000_000, ge=1, description="Work admitted at once, in rows through a model (points encoded or decoded, "
        "draws, points x k importance samples); past it requests are shed at once with 429 and Retry-After. "
        "One request over the bound is admitted only when nothing else runs.")
    request_timeout_s: float = Field(
        20.0, gt=0, le=3600, description="Deadline of a request from its arrival: past it, its work stops and it "
        "gets 503. A client may ask for less with the X-Request-Timeout header (seconds).")
    max_inflight_body_bytes: int = Field(
        64 << 20, ge=1024, description="Bytes of request bodies held at once (a parsed JSON body weighs several "
        "times its bytes); past it requests get 429 and Retry-After before their body is read.")
    max_url_bytes: int = Field(32 << 10, ge=1024, description="Longest request target (path and query); 414.")
    max_header_bytes: int = Field(16 << 10, ge=1024, description="Most bytes of request headers; 431.")
    header_timeout_s: float = Field(10.0, gt=0, description="A connection must send a request's headers within "
                                    "this; slower ones (slowloris) get 408 and are closed.")
    body_timeout_s: float = Field(30.0, gt=0, description="A request's body must arrive within this after its "
                                  "headers; slower ones get 408 and are closed.")
    keep_alive_timeout_s: float = Field(5.0, gt=0, description="An idle keep-alive connection is closed after this.")
    drain_timeout_s: float = Field(20.0, ge=0, description="On SIGTERM: stop accepting, let requests in flight "
                                   "finish for at most this long, stop the rest, exit 0.")
    drain_ready_delay_s: float = Field(
        0.0, ge=0, le=300, description="On SIGTERM, before the drain: /health/ready answers 503 for this long while "
        "every route keeps serving, so that load balancers and Kubernetes endpoints stop sending new requests "
        "before the server stops accepting them (the endpoint-removal pattern; docs/RELIABILITY.md, "
        "\"Replicas\"). Set it above the balancer's time to take a server out (check interval x failures). A "
        "second SIGTERM, or SIGINT (Ctrl-C), drains at once. 0: drain at once. Needs VAE_WORKERS=1.")
    inline_work_elements: int = Field(
        65536, ge=0, description="Computations over at most this many values run on the event loop (a thread "
        "hop costs more than they do); larger ones go to a worker thread.")
    batching: Literal["auto", "on", "off"] = Field(
        "auto", description="Coalesce concurrent requests for the same model run into one, results identical to "
        "unbatched. auto: with CUDA every request (a run's launch costs far more than a row); on the CPU the "
        "requests small enough to run on the event loop (VAE_INLINE_WORK_ELEMENTS values), whose per-call costs "
        "one run amortises, while larger ones run alone, each stopped at its own deadline (docs/BENCHMARKS.md). "
        "on: every request (a coalesced run is not stopped for one client's deadline); off: none.")
    batch_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="How long a request waits for others to join its run; 0: only those that "
        "arrive while the event loop is busy join, so an idle service adds no delay.")
    batch_max_points: int = Field(256, ge=1, description="Most rows in one coalesced run (one request is never "
                                  "split; a larger one runs alone).")
    reload_interval_s: float = Field(
        10.0, ge=0, description="Seconds between looks at the model repository's files (names, sizes, mtimes); "
        "versions added, changed or removed are loaded beside the serving ones and swapped in. 0: no polling "
        "(POST /admin/reload still reloads on demand).")
    host: str = Field("127.0.0.1", description="Address `make serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `make serve` binds.")
    workers: int = Field(1, ge=1, description="Server processes; each loads every model.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    access_log: bool = Field(False, description="A log line per request (uvicorn's access log, at level info). "
                             "Off by default: at thousands of requests a second it costs more CPU than a small "
                             "model's run; /metrics counts and times every request either way.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys; when set, every route but /health/*, "
        "the docs (/docs, /redoc, /openapi.json) and the explorer page's files (/explore) needs "
        "`Authorization: Bearer <key>`. Unset: open.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated host names the service answers to (the Host header "
        "without its port; `*.example.com` for its subdomains); any other Host gets 400, which stops DNS "
        "rebinding against a loopback service. Unset: any host.")

    @model_validator(mode="after")
    def _ready_delay_needs_one_worker(self) -> "Settings":
        if self.drain_ready_delay_s > 0 and self.workers > 1:
            raise ValueError("VAE_DRAIN_READY_DELAY_S needs VAE_WORKERS=1 (uvicorn's supervisor stops its workers at "
                             "once); behind a load balancer, run one process per replica")
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value):
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        return [_host_name(str(host)) for host in value if str(host).strip()]

    @field_validator("model_repository")
    @classmethod
    def _repository_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"VAE_MODEL_REPOSITORY={value} is not a folder")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"VAE_REDIS_URL must start with redis://, rediss:// or unix://, got {value!r}")
        return value


def _host_name(entry: str) -> str:
    """One VAE_ALLOWED_HOSTS entry, lower case, IPv6 literals without brackets; a port or a stray * is an error."""
    host = entry.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    wildcard = host.startswith("*.")
    if "*" in (host[2:] if wildcard else host) or host.count(":") == 1 or "/" in host or not host:
        raise ValueError(f"VAE_ALLOWED_HOSTS: {entry.strip()!r} is not a host name; list names or addresses "
                         "without ports (localhost,127.0.0.1,::1), `*.example.com` for subdomains")
    return host
