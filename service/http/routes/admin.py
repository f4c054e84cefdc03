from fastapi import APIRouter

from service.engine.repository import ReloadReport
from service.errors import AdminActionsDisabled
from service.http.deps import DataPlaneDep, ReloaderDep
from service.http.schemas import ErrorResponse

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadReport, responses={
    403: {"model": ErrorResponse, "description": "No API keys are configured (VAE_API_KEYS): admin actions are off."},
    503: {"model": ErrorResponse, "description": "The model repository folder cannot be read now."}})
async def reload_models(dataplane: DataPlaneDep, reloader: ReloaderDep) -> ReloadReport:
    """Scan the model repository now: load versions added or changed, drop removed ones; say what changed."""
    if not dataplane.settings.api_keys:
        raise AdminActionsDisabled("POST /admin/reload is an admin action, and this service has no API keys: set "
                                   "VAE_API_KEYS (comma-separated) and send `Authorization: Bearer <key>`")
    return await reloader.reload()
