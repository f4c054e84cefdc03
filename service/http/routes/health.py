from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from service.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])
PROBES, METRICS = "/health/", "/metrics"  # answered whatever the load; /health/* needs no key


@router.get(PROBES + "live")
async def check_liveness() -> dict:
    """The process answers."""
    return {"status": "alive"}


@router.get(PROBES + "ready", responses={503: {"description": "No model is loaded, or the server is stopping."}})
async def check_readiness(request: Request) -> JSONResponse:
    """200 when at least one model serves; reports failed models and the cache backend's state. 503 once SIGTERM
    came (VAE_DRAIN_READY_DELAY_S), while the other routes still serve."""
    dataplane = getattr(request.app.state, "dataplane", None)
    if dataplane is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    ready, report = await dataplane.readiness()
    if getattr(request.app.state, "stopping", False):
        ready, report = False, {**report, "status": "stopping"}
    return JSONResponse(report, status_code=200 if ready else 503)


@router.get(METRICS, response_class=PlainTextResponse,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
async def export_metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
