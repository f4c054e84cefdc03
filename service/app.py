"""The ASGI app (`service.app:app`): settings, model loading and the cache at start-up; routers; errors."""

import logging
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.types import Receive, Scope, Send

from service.cache import MemoryCache, RedisCache
from service.errors import ServiceError
from service.metrics import Metrics
from service.middleware import BodyLimits, RequestBudget, RequestMetrics
from service.operations import VaeService
from service.reload import RepositoryReloader
from service.repository import ModelRepository, RuntimeOptions
from service.responses import ArrayJSONResponse
from service.routes import admin, health, latents, loglik, models, sample
from service.routes.direct import DirectLane, error_reply, validation_reply
from service.runtime import providers_for
from service.security import AccessGuard, describe_bearer_keys
from service.settings import Settings

log = logging.getLogger("service")
DESCRIPTION = (
    "Serve Variational Autoencoders: encode data into latents, decode latents, draw samples, and score data "
    "by its importance-sampled log-likelihood log p(x). Models come from a `vae-onnx/1` repository."
)


def create_app(settings: Settings | None = None) -> "ServiceApp":
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
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for module in (latents, sample, loglik, models, health, admin):
        app.include_router(module.router)
    app.openapi = lambda: app.openapi_schema or describe_bearer_keys(FastAPI.openapi(app))
    return ServiceApp(app)


class ServiceApp:
    """The ASGI app served: the service's own pure-ASGI middleware in front of every HTTP request, then the
    direct lane (service.routes.direct) for the data routes and FastAPI for the rest. FastAPI's entry (its
    telemetry hook reads the environment on every request) and Starlette's error layers run only for the
    routes FastAPI answers. Every other attribute is the FastAPI app's (state, openapi(), routes)."""

    def __init__(self, api: FastAPI):
        self.api = api
        lane = DirectLane(api, routers=[latents.router, sample.router, loglik.router])
        # metrics outermost, so refusals are counted too; then access, body limits, the request's budget
        self.http = RequestMetrics(AccessGuard(BodyLimits(RequestBudget(lane))), metrics=api.state.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan (and websockets, which no route takes)
            return await self.api(scope, receive, send)
        scope["app"] = self.api  # what the middleware and Starlette read the settings and the service from
        await self.http(scope, receive, send)

    def __getattr__(self, name: str):
        return getattr(self.api, name)


async def _service_error(request: Request, exc: ServiceError) -> Response:
    return error_reply(exc, request.scope).response()


async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
    return validation_reply(exc).response()


app = create_app()
