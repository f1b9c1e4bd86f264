"""Domain errors: each carries the HTTP status and the machine-readable code it maps to."""

from __future__ import annotations

from typing import Any, ClassVar


class ChartsError(Exception):
    """Base of every error a client can cause; rendered as one JSON envelope."""

    status_code: ClassVar[int] = 400
    error_code: ClassVar[str] = "BAD_REQUEST"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidData(ChartsError):
    error_code = "INVALID_DATA"


class DuplicateTime(InvalidData):
    error_code = "DUPLICATE_TIME"


class InvalidRequest(ChartsError):
    """The request is not shaped as the contract says (wrong types, missing fields, bad ids)."""

    status_code = 422
    error_code = "VALIDATION_ERROR"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors if errors is not None else [{"msg": detail}]


class ChartNotFound(ChartsError):
    status_code = 404
    error_code = "CHART_NOT_FOUND"

    def __init__(self, chart_id: str) -> None:
        super().__init__(f"Chart '{chart_id}' does not exist.")


class SeriesNotFound(ChartsError):
    status_code = 404
    error_code = "SERIES_NOT_FOUND"

    def __init__(self, chart_id: str, pane_id: int, series_id: str) -> None:
        super().__init__(
            f"Series '{series_id}' does not exist in pane {pane_id} of chart '{chart_id}'."
        )


class SeriesTypeConflict(ChartsError):
    status_code = 409
    error_code = "SERIES_TYPE_CONFLICT"


class DatabaseUnavailable(ChartsError):
    """The database cannot be reached (down, restarting, out of connections); nothing changed."""

    status_code = 503
    error_code = "DATABASE_UNAVAILABLE"
