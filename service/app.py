"""The ASGI app (`service.app:app`): the three tiers wired together. At start-up (the lifespan): the settings,
the model repository (engine tier), the cache and the data plane, the reloader; then the HTTP front serves."""

import asyncio
import gc
import logging
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline

from service.dataplane.cache import Cache, MemoryCache, RedisCache
from service.dataplane.dataplane import DataPlane
from service.dataplane.reload import RepositoryReloader
from service.engine.options import EngineOptions
from service.engine.repository import ModelRepository
from service.engine.sessions import providers_for
from service.errors import ServiceError
from service.http.front import ServiceApp
from service.http.replies import ArrayJSONResponse, error_reply, validation_reply
from service.http.routes import admin, explorer, health, inference, latents, loglik, models, sample, score
from service.http.security import describe_bearer_keys
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("service")
DESCRIPTION = (
    "Serve Variational Autoencoders: encode data into latents, decode latents, draw samples, and score data "
    "by its importance-sampled log-likelihood log p(x). Models come from a `vae-onnx/1` repository.\n\n"
    "[The explorer](explore) (`/explore`) shows each model's samples, reconstructions, interpolations, latent map "
    "and anomaly scores in the browser, through this API."
)


def create_app(settings: Settings | None = None) -> ServiceApp:
    """The app; `settings` default to the environment (VAE_*), read when the app starts."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        current = app.state.settings = settings or Settings()
        providers = providers_for(current.device)
        cache = _cache(current)
        # The data plane holds the repository's snapshot alone (no name here keeps it past a reload's swap)
        dataplane = app.state.dataplane = DataPlane(
            await to_thread.run_sync(ModelRepository.load, current.model_repository,
                                     EngineOptions.from_settings(current, providers)), cache, current, metrics)
        metrics.watch(lambda: dataplane.executor.admission.in_flight,
                      lambda: dataplane.executor.compute_slots.statistics().tasks_waiting)
        freeze = CollectorFreeze(current.request_timeout_s)
        reloader = app.state.reloader = RepositoryReloader(dataplane, current.reload_interval_s, freeze.after_reload)
        reloader.start()
        front.start(current)
        freeze.start()
        log.info("serving %s from %s on %s, cache: %s", ", ".join(dataplane.repository.references()) or "no model",
                 current.model_repository, providers[0], cache.backend)
        try:
            yield
        finally:
            await reloader.stop()
            await cache.close()
            freeze.stop()

    # FastAPIOffline: FastAPI with /docs and /redoc on assets served from the installed package, not a CDN.
    api = FastAPIOffline(title="vae-serve", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                         default_response_class=ArrayJSONResponse, static_url="/docs/static",
                         swagger_ui_parameters={"validatorUrl": None})
    api.state.metrics = metrics
    api.add_exception_handler(ServiceError, _service_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    for module in (latents, sample, loglik, score, models, health, admin, explorer, inference):
        api.include_router(module.router)
    api.openapi = lambda: api.openapi_schema or describe_bearer_keys(FastAPI.openapi(api))
    front = ServiceApp(api, [latents.router, sample.router, loglik.router, score.router], metrics)
    return front


class CollectorFreeze:
    """What start-up loaded (the models, the framework: about 100,000 objects) moved out of the garbage
    collector's reach, so that a full collection no longer walks it: 60 ms on this project's 2-core machine, a
    stall every request in flight waited out (p99 of /encode 79 -> 17 ms, docs/BENCHMARKS.md). A reload swaps
    versions out: their objects go back to the collector, and once every request that could still hold them
    has passed its deadline, what is left is collected and frozen again."""

    def __init__(self, settle_s: float):
        self.settle_s = settle_s  # the longest a request may hold the version it resolved (VAE_REQUEST_TIMEOUT_S)
        self._refreeze: asyncio.TimerHandle | None = None

    def start(self) -> None:
        gc.freeze()

    def after_reload(self) -> None:
        gc.unfreeze()
        if self._refreeze is not None:
            self._refreeze.cancel()
        self._refreeze = asyncio.get_running_loop().call_later(self.settle_s + 1.0, self._collect_and_freeze)

    def stop(self) -> None:
        """Everything back to the collector (apps in one process, as in tests, each hand theirs back)."""
        if self._refreeze is not None:
            self._refreeze.cancel()
        gc.unfreeze()

    def _collect_and_freeze(self) -> None:
        self._refreeze = None
        gc.collect()
        gc.freeze()


def _cache(settings: Settings) -> Cache:
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_s, settings.redis_retry_s)
    return MemoryCache(settings.cache_max_entries, settings.cache_ttl_s, settings.cache_max_bytes)


async def _service_error(request: Request, exc: ServiceError) -> Response:
    return error_reply(exc, request.scope).response()


async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
    return validation_reply(exc).response()


app = create_app()
