"""The routes' dependencies: what FastAPI hands a route besides the request's own fields."""

from typing import Annotated

from fastapi import Depends, Request

from service.dataplane.dataplane import DataPlane
from service.dataplane.reload import RepositoryReloader


async def get_dataplane(request: Request) -> DataPlane:
    """async: FastAPI would run a plain function in its thread pool, a thread hop per request."""
    return request.app.state.dataplane


async def get_reloader(request: Request) -> RepositoryReloader:
    return request.app.state.reloader


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
ReloaderDep = Annotated[RepositoryReloader, Depends(get_reloader)]
