"""Who is calling and what they may do: JWTs, API keys, chart lists and scopes.

A caller is a :class:`Principal`: a subject, the charts it may touch (``None`` = every chart) and
its scopes (``charts:read``, ``charts:write``). Credentials come from the ``Authorization: Bearer``
header or the API key header on HTTP, and on WebSockets also from ``Sec-WebSocket-Protocol:
bearer, <token>`` (browsers cannot set headers on a socket) or a ``token`` query parameter
(a JWT only: URLs end up in logs, and an API key lives until it is revoked).

The same :class:`Authenticator` serves the REST dependencies and the WebSocket handler, so both
refuse the same credentials for the same reasons. Refusals are ``ChartsError`` subclasses: 401
(:class:`~.errors.NotAuthenticated` and its kinds) or 403 (:class:`~.errors.Forbidden`); their
``detail`` is a sentence short enough to be a WebSocket close reason.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import jwt
from jwt.warnings import InsecureKeyLengthWarning
from starlette.websockets import WebSocket

from .apikeys import API_KEY_PREFIX, ApiKey, KeyStore, hash_key, is_key_shaped
from .charts.points import MAX_TIME
from .charts.service import is_valid_id
from .config import Settings
from .errors import (
    ApiKeyRevoked,
    ChartsError,
    DatabaseUnavailable,
    Forbidden,
    InvalidApiKey,
    InvalidToken,
    NotAuthenticated,
    TokenExpired,
)
from .request_context import bind_log_fields

READ: Final = "charts:read"
WRITE: Final = "charts:write"
ALL_SCOPES: Final = frozenset({READ, WRITE})

WEBSOCKET_POLICY_VIOLATION: Final = 1008
TOKEN_EXPIRED: Final = "The token has expired."
KEY_REVOKED: Final = "The API key has been revoked."
KEY_GONE: Final = "The API key no longer exists."
ISSUING_KEY_REVOKED: Final = "The API key this token was issued for has been revoked."
ISSUING_KEY_GONE: Final = "The API key this token was issued for no longer exists."
#: The refusals of credentials that were valid once: an open socket is closed with them.
REVOCATIONS: Final = frozenset({KEY_REVOKED, KEY_GONE, ISSUING_KEY_REVOKED, ISSUING_KEY_GONE})
#: RFC 6455's "Try Again Later": the server could not check the credentials (database away).
WEBSOCKET_TRY_AGAIN_LATER: Final = 1013
_CLOSE_REASON_BYTES: Final = 123
_TOKEN_CACHE_SIZE: Final = 4096
_MAX_CREDENTIAL_LENGTH: Final = 8192
_MAX_KEY_ID_LENGTH: Final = 128


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``chart_ids`` is ``None`` when every chart is allowed. ``expires_at`` (UTC epoch seconds) is
    the token's ``exp``; API keys have none and stay valid until revoked.
    """

    sub: str
    chart_ids: frozenset[str] | None
    scopes: frozenset[str]
    expires_at: float | None = None
    kind: Literal["token", "api_key", "anonymous"] = "token"
    key_id: str | None = None

    def may_see(self, chart_id: str) -> bool:
        return self.chart_ids is None or chart_id in self.chart_ids

    def check(self, chart_id: str | None, scope: str) -> None:
        """Raise :class:`Forbidden` unless this caller holds ``scope`` on ``chart_id``
        (``None``: no particular chart, as for the chart listing)."""
        if scope not in self.scopes:
            action = "read" if scope == READ else "write"
            raise Forbidden(f"This credential may not {action} charts (it lacks {scope}).")
        if chart_id is not None and not self.may_see(chart_id):
            raise Forbidden(f"This credential does not grant access to chart {chart_id[:128]!r}.")

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)


ANONYMOUS: Final = Principal("anonymous", None, ALL_SCOPES, kind="anonymous")
"""The caller of every request while ``ENABLE_AUTH`` is false."""


def parse_scope(value: object) -> frozenset[str]:
    """Scopes from a claim or option: a space-separated string or a list; absent means both."""
    if value is None:
        return ALL_SCOPES
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple | frozenset | set) or not all(
        isinstance(item, str) for item in items
    ):
        raise ValueError("scope must be a space-separated string or a list of strings")
    scopes = frozenset(items)
    unknown = scopes - ALL_SCOPES
    if unknown or not scopes:
        raise ValueError(f"scope must be {READ}, {WRITE} or both; got {' '.join(sorted(unknown))}")
    return scopes


def parse_chart_ids(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) and is_valid_id(item) for item in value
    ):
        raise ValueError("chart_ids must be a list of chart ids")
    return frozenset(value)


def create_access_token(
    data: Mapping[str, Any], settings: Settings, expires_delta: timedelta | None = None
) -> str:
    """Sign a JWT carrying ``data`` plus ``iat`` and ``exp``.

    ``data`` must hold ``sub``; ``chart_ids`` (a list) limits the token to those charts and
    ``scope`` (``"charts:read"``, ``"charts:write"`` or both, space-separated) to those actions;
    without them the token opens every chart for reading and writing. The lifetime is
    ``expires_delta`` or ``ACCESS_TOKEN_EXPIRE_MINUTES``.

    Example::

        token = create_access_token({"sub": "user123", "chart_ids": ["chart1", "chart2"]}, settings)
        headers = {"Authorization": f"Bearer {token}"}
    """
    claims = dict(data)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise ValueError("data needs a non-empty string 'sub'")
    parse_chart_ids(claims.get("chart_ids"))
    if "chart_ids" in claims:
        claims["chart_ids"] = list(claims["chart_ids"])
    if "scope" in claims:
        claims["scope"] = " ".join(sorted(parse_scope(claims["scope"])))
    now = datetime.now(UTC)
    lifetime = expires_delta or timedelta(minutes=settings.access_token_expire_minutes)
    claims["iat"] = int(now.timestamp())
    claims["exp"] = int((now + lifetime).timestamp())
    with _quiet_short_key(settings):
        return jwt.encode(claims, settings.secret_key, algorithm=settings.algorithm)


def decode_access_token(token: str, settings: Settings) -> Principal:
    """Verify ``token`` and return its principal; raise :class:`InvalidToken` or
    :class:`TokenExpired`.

    Only ``ALGORITHM`` is accepted (so ``alg: none`` and algorithm swaps fail), the signature
    must match ``SECRET_KEY``, and ``exp`` and ``sub`` are required.
    """
    try:
        with _quiet_short_key(settings):
            claims = jwt.decode(
                token,
                settings.secret_key,
                algorithms=[settings.algorithm],
                options={"require": ["exp", "sub"]},
            )
    except jwt.ExpiredSignatureError:
        raise TokenExpired("The token has expired; get a new one.") from None
    except jwt.InvalidAlgorithmError:
        raise InvalidToken(
            f"The token is not signed with the accepted algorithm ({settings.algorithm})."
        ) from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("The token signature does not verify.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"The token lacks the required claim {exc.claim!r}.") from None
    except (jwt.PyJWTError, ArithmeticError, TypeError, ValueError):
        # PyJWT converts time claims with int() and compares them: a huge or odd value can
        # fail there with something other than its own errors.
        raise InvalidToken("The token is malformed.") from None
    try:
        return Principal(
            sub=_subject(claims["sub"]),
            chart_ids=parse_chart_ids(claims.get("chart_ids")),
            scopes=parse_scope(claims.get("scope")),
            expires_at=_claim_time(claims, "exp"),
            key_id=_key_id(claims.get("key_id")),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidToken(f"The token's claims are invalid: {exc}.") from None


def _subject(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("sub must be a non-empty string")
    return value


def _claim_time(claims: Mapping[str, Any], name: str) -> float:
    """A time claim as UTC epoch seconds; the optional ones (``iat``, ``nbf``) are checked
    alike, since PyJWT takes any value ``int()`` accepts, strings and booleans included."""
    for claim in ("iat", "nbf"):
        if claim in claims:
            _epoch_seconds(claim, claims[claim])
    return _epoch_seconds(name, claims[name])


def _epoch_seconds(name: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_TIME:
        return float(value)
    raise ValueError(f"{name} must be a number of seconds from 1970 to the year 9999")


def _key_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_KEY_ID_LENGTH:
        raise ValueError("key_id must be an API key's id")
    return value


def _quiet_short_key(settings: Settings) -> AbstractContextManager[None]:
    """PyJWT warns on every call when an HMAC key is shorter than its digest. A short key is
    refused in production, so the per-call warning is silenced; only for short keys, to keep the
    common path free of warning filters."""
    if len(settings.secret_key.encode()) >= minimum_key_bytes(settings.algorithm):
        return nullcontext()
    return _ignoring_key_length()


@contextmanager
def _ignoring_key_length() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


def minimum_key_bytes(algorithm: str) -> int:
    """RFC 7518 section 3.2: an HMAC key at least as long as the hash output."""
    return {"HS256": 32, "HS384": 48, "HS512": 64}.get(algorithm, 32)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented. ``token`` is a bearer value (a JWT, or an API key sent as
    bearer); ``subprotocol`` is ``"bearer"`` when the token came in ``Sec-WebSocket-Protocol``
    and the server must echo it when accepting the socket."""

    token: str | None = None
    api_key: str | None = None
    subprotocol: str | None = None

    @property
    def present(self) -> bool:
        return self.token is not None or self.api_key is not None


def http_credentials(headers: Mapping[str, str], api_key_header: str) -> Credentials:
    """Credentials of an HTTP request (``headers`` must look names up case-insensitively, as
    Starlette's ``Headers`` does)."""
    authorization = headers.get("authorization")
    token = _bearer(authorization) if authorization is not None else None
    api_key = headers.get(api_key_header)
    return Credentials(token=token, api_key=api_key.strip() if api_key else None)


def websocket_credentials(
    headers: Mapping[str, str], query_params: Mapping[str, str], api_key_header: str
) -> Credentials:
    """Credentials of a WebSocket handshake, in order of preference: ``Authorization: Bearer``,
    the API key header, ``Sec-WebSocket-Protocol: bearer, <token>``, ``?token=``.

    ``?token=`` takes a JWT only; an API key there is refused (:class:`InvalidApiKey`)."""
    found = http_credentials(headers, api_key_header)
    offered = offered_subprotocols(headers)
    subprotocol = "bearer" if "bearer" in offered else None
    if found.present:
        return Credentials(found.token, found.api_key, subprotocol)
    if subprotocol is not None:
        position = offered.index("bearer")
        if position + 1 >= len(offered):
            raise InvalidToken("Sec-WebSocket-Protocol names 'bearer' but carries no token.")
        return Credentials(token=offered[position + 1], subprotocol=subprotocol)
    token = query_params.get("token")
    if token:
        if token.startswith(API_KEY_PREFIX):
            # A URL is written down by proxies, browsers' histories and access logs; a
            # long-lived key must not travel in one. A page trades it for a token first.
            raise InvalidApiKey(
                "?token= takes a token, not an API key: exchange the key at POST /api/auth/token."
            )
        return Credentials(token=token)
    return Credentials()


def offered_subprotocols(headers: Mapping[str, str]) -> list[str]:
    value = headers.get("sec-websocket-protocol")
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def _bearer(authorization: str) -> str:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken("The Authorization header must read 'Bearer <token>'.")
    return value.strip()


class Authenticator:
    """Turns credentials into a :class:`Principal`; one per app, on ``app.state.authenticator``.

    With ``ENABLE_AUTH`` false, :meth:`require` lets everyone through as :data:`ANONYMOUS`
    without reading any header. Verified tokens are remembered (bounded), so a browser that
    sends the same token on every request pays for the signature check once; expiry is still
    checked on every use. API keys are looked up in ``keystore`` by their hash.
    """

    def __init__(self, settings: Settings, keystore: KeyStore) -> None:
        self.settings = settings
        self.keystore = keystore
        self.enforce = settings.enable_auth
        self.api_key_header = settings.api_key_header
        self._tokens: dict[str, Principal] = {}

    async def authenticate(self, credentials: Credentials) -> Principal | None:
        """The principal behind ``credentials``; ``None`` when nothing was presented.

        Raises a :class:`NotAuthenticated` kind for credentials that are presented but not
        valid (the bearer token wins when both a token and an API key are sent).
        """
        if credentials.token is not None:
            if credentials.token.startswith(API_KEY_PREFIX):
                principal = await self.api_key_principal(credentials.token)
            else:
                principal = self.token_principal(credentials.token)
                if principal.key_id is not None:
                    await self.check_issuing_key(principal.key_id)
        elif credentials.api_key is not None:
            principal = await self.api_key_principal(credentials.api_key)
        else:
            return None
        # Every later line of this request or connection (its access line too) names the caller.
        bind_log_fields(user=principal.sub)
        return principal

    def token_principal(self, token: str) -> Principal:
        if len(token) > _MAX_CREDENTIAL_LENGTH:
            raise InvalidToken("The token is malformed.")
        principal = self._tokens.get(token)
        if principal is None:
            principal = decode_access_token(token, self.settings)
            if len(self._tokens) >= _TOKEN_CACHE_SIZE:
                self._tokens.clear()
            self._tokens[token] = principal
        elif principal.expires_at is not None and principal.expires_at <= time.time():
            del self._tokens[token]
            raise TokenExpired("The token has expired; get a new one.")
        return principal

    async def check_issuing_key(self, key_id: str) -> None:
        """Refuse a token issued for an API key (``POST /api/auth/token``) once that key is
        revoked or gone: the token names the key, and the key store is asked on every use
        (from its cache, so a revocation elsewhere counts within ``KEY_CACHE_SECONDS``)."""
        record = await self.keystore.find_by_id(key_id)
        if record is None:
            raise InvalidToken(ISSUING_KEY_GONE)
        if record.revoked_at is not None:
            raise ApiKeyRevoked(ISSUING_KEY_REVOKED)

    async def recheck(self, principal: Principal) -> ChartsError | None:
        """Why ``principal``, admitted earlier, is admitted no more: its token expired, or its
        API key (or the key its token was issued for) was revoked or deleted. None while it still
        is, and while the key store cannot be asked (the database is away: a key keeps the state
        it was last seen in). Keys are looked up in the store's cache, as on every request."""
        if principal.kind == "anonymous":
            return None
        left = principal.seconds_left()
        if left is not None and left <= 0:
            return TokenExpired(TOKEN_EXPIRED)
        if principal.key_id is None:
            return None
        try:
            if principal.kind == "token":
                await self.check_issuing_key(principal.key_id)
                return None
            record = await self.keystore.find_by_id(principal.key_id)
        except DatabaseUnavailable:
            return None
        except ChartsError as refusal:
            return refusal
        if record is None:
            return InvalidApiKey(KEY_GONE)
        if record.revoked_at is not None:
            return ApiKeyRevoked(KEY_REVOKED)
        return None

    async def api_key_principal(self, key: str) -> Principal:
        if not is_key_shaped(key):
            # Not one of ours: no need to look it up (in the database, with persistence on).
            raise InvalidApiKey("The API key is not valid.")
        record = await self.keystore.find(hash_key(key))
        if record is None:
            raise InvalidApiKey("The API key is not valid.")
        if record.revoked_at is not None:
            raise ApiKeyRevoked(KEY_REVOKED)
        return api_key_principal(record)

    async def require(
        self, headers: Mapping[str, str], chart_id: str | None, scope: str
    ) -> Principal:
        """The caller of an HTTP request, checked for ``scope`` on ``chart_id``.

        Raises 401 without valid credentials and 403 outside the credential's charts or scope.
        """
        if not self.enforce:
            return ANONYMOUS
        principal = await self.authenticate(http_credentials(headers, self.api_key_header))
        if principal is None:
            raise NotAuthenticated(
                "Authentication required: send 'Authorization: Bearer <token>' or an API key "
                f"in {self.api_key_header}."
            )
        principal.check(chart_id, scope)
        return principal

    async def websocket_grant(
        self, headers: Mapping[str, str], query_params: Mapping[str, str], chart_id: str
    ) -> WebSocketGrant:
        """Admit a WebSocket handshake for reading ``chart_id``, before ``accept``.

        Returns the principal and the subprotocol to accept with (``"bearer"`` whenever the
        client offered it, even with auth off, since a browser drops a socket whose offered
        subprotocol is not selected). Raises a :class:`ChartsError` (401/403 kinds) to refuse:
        pass it to :func:`refuse_websocket`.
        """
        if not self.enforce:
            offered = offered_subprotocols(headers)
            return WebSocketGrant(ANONYMOUS, "bearer" if "bearer" in offered else None)
        credentials = websocket_credentials(headers, query_params, self.api_key_header)
        principal = await self.authenticate(credentials)
        if principal is None:
            raise NotAuthenticated(
                "Authentication required: send a token as 'Sec-WebSocket-Protocol: bearer, "
                "<token>', ?token=, an Authorization header or an API key."
            )
        principal.check(chart_id, READ)
        return WebSocketGrant(principal, credentials.subprotocol)


def api_key_principal(record: ApiKey) -> Principal:
    return Principal(
        sub=f"apikey:{record.name}",
        chart_ids=record.chart_ids,
        scopes=record.scopes,
        kind="api_key",
        key_id=record.id,
    )


@dataclass(frozen=True, slots=True)
class WebSocketGrant:
    principal: Principal
    subprotocol: str | None


def close_reason(error: ChartsError) -> str:
    """``error.detail`` cut to the 123 bytes a WebSocket close frame can carry."""
    reason = error.detail.encode()[:_CLOSE_REASON_BYTES]
    return reason.decode(errors="ignore")


async def refuse_websocket(websocket: WebSocket, error: ChartsError) -> None:
    """Accept, then close with 1008 (policy violation) and the refusal as reason; with 1013 (try
    again later) when the refusal is retryable (the database could not be asked).

    Accepting first is what lets a browser see the code and reason; a handshake refused with an
    HTTP status shows up in JavaScript only as an anonymous 1006. Nothing is sent in between.
    """
    offered = offered_subprotocols(websocket.headers)
    await websocket.accept(subprotocol="bearer" if "bearer" in offered else None)
    code = WEBSOCKET_POLICY_VIOLATION if error.retry_after is None else WEBSOCKET_TRY_AGAIN_LATER
    await websocket.close(code=code, reason=close_reason(error))


async def close_at_expiry(websocket: WebSocket, principal: Principal) -> None:
    """Sleep until ``principal``'s token expires, then close the socket with 1008.

    Run it as a task beside the socket's own loops and cancel it when the socket ends; it
    returns at once for credentials that do not expire (API keys, auth off).
    """
    left = principal.seconds_left()
    if left is None:
        return
    await asyncio.sleep(max(left, 0.0))
    await websocket.close(code=WEBSOCKET_POLICY_VIOLATION, reason=TOKEN_EXPIRED)
