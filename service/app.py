"""The ASGI app (`service.app:app`): the three tiers wired together. At start-up (the lifespan): the settings,
the model repository (engine tier), the cache and the data plane, the reloader; then the HTTP front serves."""

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
from service.http.routes import admin, health, latents, loglik, models, sample
from service.http.security import describe_bearer_keys
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("service")
DESCRIPTION = (
    "Serve Variational Autoencoders: encode data into latents, decode latents, draw samples, and score data "
    "by its importance-sampled log-likelihood log p(x). Models come from a `vae-onnx/1` repository."
)


def create_app(settings: Settings | None = None) -> ServiceApp:
    """The app; `settings` default to the environment (VAE_*), read when the app starts."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        current = app.state.settings = settings or Settings()
        providers = providers_for(current.device)
        repository = await to_thread.run_sync(ModelRepository.load, current.model_repository,
                                              EngineOptions.from_settings(current, providers))
        cache = _cache(current)
        dataplane = app.state.dataplane = DataPlane(repository, cache, current, metrics)
        metrics.watch(lambda: dataplane.executor.admission.in_flight,
                      lambda: dataplane.executor.compute_slots.statistics().tasks_waiting)
        reloader = app.state.reloader = RepositoryReloader(dataplane, current.reload_interval_s)
        reloader.start()
        front.start(current)
        # Everything loaded so far lives as long as the process: out of the collector's reach, a full collection
        # no longer walks it (about 100,000 objects, 60 ms on this project's 2-core machine: a stall that every
        # request in flight would wait out).
        gc.freeze()
        log.info("serving %s from %s on %s, cache: %s", ", ".join(repository.references()) or "no model",
                 current.model_repository, providers[0], cache.backend)
        try:
            yield
        finally:
            await reloader.stop()
            await cache.close()
            gc.unfreeze()  # in-process apps (tests) hand their objects back to the collector

    # FastAPIOffline: FastAPI with /docs and /redoc on assets served from the installed package, not a CDN.
    api = FastAPIOffline(title="vae-serve", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                         default_response_class=ArrayJSONResponse, static_url="/docs/static",
                         swagger_ui_parameters={"validatorUrl": None})
    api.state.metrics = metrics
    api.add_exception_handler(ServiceError, _service_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    for module in (latents, sample, loglik, models, health, admin):
        api.include_router(module.router)
    api.openapi = lambda: api.openapi_schema or describe_bearer_keys(FastAPI.openapi(api))
    front = ServiceApp(api, [latents.router, sample.router, loglik.router], metrics)
    return front


def _cache(settings: Settings) -> Cache:
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_s, settings.redis_retry_s)
    return MemoryCache(settings.cache_max_entries, settings.cache_ttl_s, settings.cache_max_bytes)


async def _service_error(request: Request, exc: ServiceError) -> Response:
    return error_reply(exc, request.scope).response()


async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
    return validation_reply(exc).response()


app = create_app()
