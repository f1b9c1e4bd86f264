"""`POST /api/auth/token`: trade an API key for a short-lived, read-only token for a browser.

A page must not hold a write key, and a token in a URL or a WebSocket subprotocol should die
soon. So the token issued here can only read, only the charts asked for (which must be among the
key's), lives at most ``ACCESS_TOKEN_EXPIRE_MINUTES``, and names its key (``key_id``), so that
revoking the key also refuses the tokens bought with it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import Field, ValidationError

from ..auth import READ, create_access_token, http_credentials
from ..charts.service import check_id
from ..errors import Forbidden, InvalidRequest, NotAuthenticated
from .body import read_json_object
from .deps import AuthenticatorDep, SettingsDep
from .schemas import ErrorBody, WireModel

router = APIRouter(prefix="/api/auth", tags=["auth"])


class TokenRequest(WireModel):
    chart_ids: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="Charts the token may read; all of the key's charts when absent.",
    )
    minutes: int | None = Field(
        default=None, ge=1, description="Lifetime; at most ACCESS_TOKEN_EXPIRE_MINUTES."
    )


class TokenIssued(WireModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")
    chart_ids: list[str] | None
    scope: str


_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 413, 415, 422, 429)
}


@router.post(
    "/token",
    response_model=TokenIssued,
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": TokenRequest.model_json_schema(by_alias=True)}
            },
        }
    },
)
async def issue_token(
    request: Request, authenticator: AuthenticatorDep, settings: SettingsDep
) -> Response:
    """Exchange the API key in the key header (or as bearer) for a read-only token."""
    credentials = http_credentials(request.headers, settings.api_key_header)
    if credentials.token is None and credentials.api_key is None:
        raise NotAuthenticated(f"Send the API key to exchange in {settings.api_key_header}.")
    principal = await authenticator.authenticate(credentials)
    if principal is None or principal.kind != "api_key":
        raise Forbidden("Only an API key can be exchanged for a token, not a token.")
    principal.check(None, READ)
    try:
        wanted = TokenRequest.model_validate(await read_json_object(request, optional=True) or {})
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        raise InvalidRequest(detail, errors) from None
    chart_ids = wanted.chart_ids if wanted.chart_ids is not None else principal.chart_ids
    if wanted.chart_ids is not None:
        for chart_id in wanted.chart_ids:
            check_id(chart_id, "chartIds item")
        if principal.chart_ids is not None:
            outside = sorted(set(wanted.chart_ids) - principal.chart_ids)
            if outside:
                raise Forbidden(f"This API key does not grant the charts {', '.join(outside)}.")
    limit = settings.access_token_expire_minutes
    minutes = min(wanted.minutes or limit, limit)
    claims: dict[str, Any] = {"sub": principal.sub, "scope": READ, "key_id": principal.key_id}
    if chart_ids is not None:
        claims["chart_ids"] = sorted(chart_ids)
    token = create_access_token(claims, settings, timedelta(minutes=minutes))
    issued = TokenIssued(
        access_token=token,
        expires_in=minutes * 60,
        chart_ids=claims.get("chart_ids"),
        scope=READ,
    )
    return Response(orjson.dumps(issued.model_dump(by_alias=True)), media_type="application/json")
