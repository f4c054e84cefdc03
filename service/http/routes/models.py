from fastapi import APIRouter

from service.http.deps import DataPlaneDep

router = APIRouter(prefix="/models", tags=["models"])


@router.get("")
async def list_models(dataplane: DataPlaneDep) -> dict:
    """Every model in the repository: versions, manifests, readiness, the provider each runs on."""
    return dataplane.describe_models()


@router.get("/{name}", responses={404: {"description": "No such model."}})
async def get_model(name: str, dataplane: DataPlaneDep) -> dict:
    """One model: its versions with their manifests, or the reason a version failed to load."""
    return dataplane.describe_model(name)
