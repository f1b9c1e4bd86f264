"""What routes need, as ``Annotated`` dependencies read from ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..charts.service import ChartsService
from ..config import Settings


def get_charts(request: Request) -> ChartsService:
    service: ChartsService = request.app.state.charts
    return service


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ChartsDep = Annotated[ChartsService, Depends(get_charts)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
