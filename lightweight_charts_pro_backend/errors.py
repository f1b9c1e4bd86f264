"""Domain errors: each carries the HTTP status and the machine-readable code it maps to."""

from __future__ import annotations

from typing import Any, ClassVar, Final

#: How long a client is asked to wait (``Retry-After``) before retrying a request the database
#: could not serve: a restart or a failover takes seconds, and the service reconnects by itself.
DATABASE_RETRY_AFTER_SECONDS: Final = 1


class ChartsError(Exception):
    """Base of every error a client can cause; rendered as one JSON envelope."""

    status_code: ClassVar[int] = 400
    error_code: ClassVar[str] = "BAD_REQUEST"
    headers: dict[str, str] | None = None
    #: Seconds after which the same request may succeed (``Retry-After``); None: not retryable.
    retry_after: int | None = None

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


class InvalidResolution(InvalidRequest):
    """A resolution that is not TradingView's, or that the series cannot be aggregated to."""

    error_code = "INVALID_RESOLUTION"


class InvalidMarket(InvalidRequest):
    error_code = "INVALID_MARKET"


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


class PayloadTooLarge(ChartsError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ChartsError):
    """A body whose ``Content-Type`` the route does not take (a JSON route takes
    ``application/json`` only, so a cross-site form or ``text/plain`` post cannot write)."""

    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class UnsupportedContentEncoding(UnsupportedMediaType):
    """A ``Content-Encoding`` other than gzip (or none); RFC 7694 names the accepted ones."""

    error_code = "UNSUPPORTED_CONTENT_ENCODING"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers = {"Accept-Encoding": "gzip"}


class NotAuthenticated(ChartsError):
    """No valid credentials. ``bearer_error`` is the RFC 6750 error code for ``WWW-Authenticate``
    (none when no credentials were sent at all)."""

    status_code = 401
    error_code = "NOT_AUTHENTICATED"
    bearer_error: ClassVar[str | None] = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        challenge = 'Bearer realm="charts"'
        if self.bearer_error:
            description = detail.replace('"', "'").replace("\\", "/")
            challenge += f', error="{self.bearer_error}", error_description="{description}"'
        self.headers = {"WWW-Authenticate": challenge}


class InvalidToken(NotAuthenticated):
    error_code = "INVALID_TOKEN"
    bearer_error = "invalid_token"


class TokenExpired(InvalidToken):
    error_code = "TOKEN_EXPIRED"


class InvalidApiKey(NotAuthenticated):
    error_code = "INVALID_API_KEY"
    bearer_error = "invalid_token"


class ApiKeyRevoked(InvalidApiKey):
    error_code = "API_KEY_REVOKED"


class Forbidden(ChartsError):
    """Valid credentials that do not grant this chart or this kind of access."""

    status_code = 403
    error_code = "FORBIDDEN"


class RateLimited(ChartsError):
    status_code = 429
    error_code = "RATE_LIMITED"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class DatabaseUnavailable(ChartsError):
    """The database cannot be reached (down, restarting, out of connections) or dropped the
    connection; nothing changed, and the same request can be sent again."""

    status_code = 503
    error_code = "DATABASE_UNAVAILABLE"

    def __init__(self, detail: str, retry_after: int = DATABASE_RETRY_AFTER_SECONDS) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}
