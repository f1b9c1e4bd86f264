"""What routes need, as ``Annotated`` dependencies read from ``app.state``.

``ChartReader`` and ``ChartWriter`` authorize the request for the ``chart_id`` in its path (or,
on routes without one, for charts in general) and give the caller's :class:`Principal`; with
``ENABLE_AUTH`` false they cost one attribute check. The history route, the hot path, skips
dependency resolution and calls :func:`authorize` itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..auth import ANONYMOUS, READ, WRITE, Authenticator, Principal
from ..charts.service import ChartsService
from ..config import Settings


def get_charts(request: Request) -> ChartsService:
    service: ChartsService = request.app.state.charts
    return service


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


async def authorize(request: Request, scope: str) -> Principal:
    """The caller, checked for ``scope`` on the path's ``chart_id``: 401 or 403 otherwise."""
    authenticator: Authenticator = request.app.state.authenticator
    if not authenticator.enforce:
        return ANONYMOUS
    return await authenticator.require(request.headers, request.path_params.get("chart_id"), scope)


async def _reader(request: Request) -> Principal:
    return await authorize(request, READ)


async def _writer(request: Request) -> Principal:
    return await authorize(request, WRITE)


ChartsDep = Annotated[ChartsService, Depends(get_charts)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]
ChartReader = Annotated[Principal, Depends(_reader)]
ChartWriter = Annotated[Principal, Depends(_writer)]
