"""The ASGI app (`service.app:app`): settings, model loading and the cache at start-up; routers; errors."""

import logging
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from service.cache import MemoryCache, RedisCache
from service.errors import DeadlineExceeded, Overloaded, RequestCancelled, ServiceError
from service.metrics import Metrics
from service.middleware import BodyLimits, RequestBudget, RequestMetrics
from service.operations import VaeService
from service.reload import RepositoryReloader
from service.repository import ModelRepository, RuntimeOptions
from service.responses import ArrayJSONResponse
from service.routes import admin, health, latents, loglik, models, sample
from service.runtime import providers_for
from service.security import AccessGuard, describe_bearer_keys
from service.settings import Settings

log = logging.getLogger("service")
DESCRIPTION = (
    "Serve Variational Autoencoders: encode data into latents, decode latents, draw samples, and score data "
    "by its importance-sampled log-likelihood log p(x). Models come from a `vae-onnx/1` repository."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; `settings` default to the environment (VAE_*), read when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        current = app.state.settings = settings or Settings()
        providers = providers_for(current.device)
        options = RuntimeOptions.from_settings(current, providers)
        repository = await to_thread.run_sync(ModelRepository.load, current.model_repository, options)
        if current.redis_url:
            cache = RedisCache(current.redis_url, current.cache_ttl_s, current.redis_timeout_s, current.redis_retry_s)
        else:
            cache = MemoryCache(current.cache_max_entries, current.cache_ttl_s, current.cache_max_bytes)
        service = app.state.service = VaeService(repository, cache, current, app.state.metrics, providers[0])
        app.state.metrics.watch(lambda: service.admission.in_flight,
                                lambda: service.compute_slots.statistics().tasks_waiting)
        app.state.reloader = RepositoryReloader(service, current.reload_interval_s)
        app.state.reloader.start()
        log.info("serving %s from %s on %s, cache: %s", ", ".join(repository.references()) or "no model",
                 current.model_repository, providers[0], cache.backend)
        try:
            yield
        finally:
            await app.state.reloader.stop()
            await cache.close()

    # FastAPIOffline: FastAPI with /docs and /redoc on assets served from the installed package, not a CDN.
    app = FastAPIOffline(title="vae-serve", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                         default_response_class=ArrayJSONResponse, static_url="/docs/static",
                         swagger_ui_parameters={"validatorUrl": None})
    app.state.metrics = Metrics()
    app.add_middleware(RequestBudget)  # the last added runs first: metrics, access, bodies, then the budget
    app.add_middleware(BodyLimits)
    app.add_middleware(AccessGuard)  # inside RequestMetrics, so refusals are counted too
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for module in (latents, sample, loglik, models, health, admin):
        app.include_router(module.router)
    app.openapi = lambda: app.openapi_schema or describe_bearer_keys(FastAPI.openapi(app))
    return app


DROPPED = {Overloaded: "shed", DeadlineExceeded: "timeout", RequestCancelled: "cancelled"}


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    if type(exc) in DROPPED:
        request.state.dropped = DROPPED[type(exc)]  # counted apart by RequestMetrics
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic's errors as one readable line per field, without echoing the (possibly huge) input."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"] if p not in ("body", "query"))
        problems.append(f"{location or 'body'}: {error['msg']}")
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


app = create_app()
