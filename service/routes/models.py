from fastapi import APIRouter

from service.errors import ModelNotFound
from service.repository import describe_model
from service.routes.deps import ServiceDep

router = APIRouter(prefix="/models", tags=["models"])


@router.get("")
async def list_models(service: ServiceDep) -> dict:
    """Every model in the repository: versions, manifests, readiness, the provider each runs on."""
    repository = service.repository
    return {"default_model": service.settings.default_model,
            "models": [describe_model(repository, name) for name in repository.names()]}


@router.get("/{name}", responses={404: {"description": "No such model."}})
async def get_model(name: str, service: ServiceDep) -> dict:
    """One model: its versions with their manifests, or the reason a version failed to load."""
    if name not in service.repository.names():
        raise ModelNotFound(f"model: no model {name!r}; GET /models lists them")
    return describe_model(service.repository, name)
