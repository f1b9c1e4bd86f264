"""Per-client rate limits with the ``limits`` library: in memory, or in Redis shared by workers.

Two fixed one-minute windows per client address: ``RATE_LIMIT_PER_MINUTE`` for every request
under ``/api`` and every WebSocket handshake under ``/ws``, and ``RATE_LIMIT_HISTORY_PER_MINUTE``
for history (the REST history routes, and ``request_history`` frames on a socket, which the
WebSocket handler checks with :meth:`RateLimiter.hit_history`). Health and metrics are never
limited.

The client address is the socket peer, unless the peer is in ``TRUSTED_PROXIES``: then it is the
right-most ``X-Forwarded-For`` hop that is not itself a trusted proxy, since every hop left of it
was written by a party nobody vouches for.

When Redis cannot be reached the request is let through and a warning logged (at most once a
minute): an outage of the limiter's store must not take the API down with it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Final

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api.errors import error_response
from .config import Settings
from .metrics import RateLimitScope

logger = logging.getLogger(__name__)

_FORWARDED_FOR: Final = b"x-forwarded-for"
_WARN_EVERY_SECONDS: Final = 60.0
_MAX_ADDRESS_LENGTH: Final = 64
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one hit: whether it is allowed and the window's state after it."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset_at)).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers

    def message(self, what: str) -> str:
        return (
            f"Rate limit exceeded: {self.limit} {what} per minute per client. "
            f"Retry in {self.retry_after} s."
        )


class ClientAddress:
    """Finds the client's address in an ASGI scope, believing ``X-Forwarded-For`` only from
    trusted proxies."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        self._networks: list[_IPNetwork] = [
            ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies
        ]
        self._verdicts: dict[str, bool] = {}

    def trusted(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            address = _parse_ip(host)
            verdict = address is not None and any(address in net for net in self._networks)
            if len(self._verdicts) >= 4096:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def __call__(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self._networks or not self.trusted(peer):
            return peer
        values = [value for name, value in scope["headers"] if name == _FORWARDED_FOR]
        hops = [hop.strip() for hop in b",".join(values).decode("latin-1").split(",")]
        hops = [hop for hop in hops if hop]
        for hop in reversed(hops):
            if not self.trusted(hop):
                address = _parse_ip(hop)
                return str(address) if address is not None else hop[:_MAX_ADDRESS_LENGTH]
        return hops[0] if hops else peer


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: bare, ``[v6]``, or with a ``:port`` after it."""
    candidate = value.strip()
    if candidate.startswith("["):
        candidate = candidate[1:].partition("]")[0]
    elif candidate.count(":") == 1:
        candidate = candidate.partition(":")[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def storage_uri(redis_url: str) -> str:
    """The ``limits`` URI for a ``REDIS_URL``."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class RateLimiter:
    """The app's limits; one per process, on ``app.state.rate_limiter`` (``None`` when off).

    Example (a WebSocket handler answering ``request_history``)::

        decision = await limiter.hit_history(limiter.client_address(websocket.scope))
        if not decision.allowed:
            ...  # send an error frame with decision.message("history requests")
    """

    def __init__(self, settings: Settings) -> None:
        self.api = RateLimitItemPerMinute(settings.rate_limit_per_minute)
        self.history = RateLimitItemPerMinute(settings.rate_limit_history_per_minute)
        self.client_address = ClientAddress(settings.trusted_proxies)
        self._pool: ConnectionPool | None = None
        self.storage: Storage
        if settings.redis_url:
            # The worker's pid in the client name tells operators (and the tests) which worker
            # holds which connection in Redis' CLIENT LIST.
            self._pool = ConnectionPool.from_url(
                settings.redis_url, client_name=f"charts-ratelimit-{os.getpid()}"
            )
            self.storage = RedisStorage(
                storage_uri(settings.redis_url),
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix="charts-ratelimit",
                # limits passes this through to redis.asyncio.Redis; its stub types options
                # as scalars.
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
        else:
            self.storage = MemoryStorage()
        self._warned_at = -math.inf

    async def hit(self, client: str, *, history: bool = False) -> Decision:
        """Count one API request from ``client`` (and one history request when ``history``);
        the decision of the tighter limit comes back."""
        if not history:
            return await self._hit(self.api, "api", client)
        try:
            within_api = await self._count(self.api, "api", client) <= self.api.amount
        except StorageError as exc:
            return self._unavailable(self.api, exc)
        if not within_api:
            return await self._hit(self.api, "api", client, counted=True)
        return await self._hit(self.history, "history", client)

    async def hit_history(self, client: str) -> Decision:
        return await self._hit(self.history, "history", client)

    async def _count(self, item: RateLimitItem, kind: str, client: str) -> int:
        # The fixed-window strategy (``FixedWindowRateLimiter.hit``) spelled out on the storage,
        # with the key built once: building it is most of the cost of a hit in memory.
        return await self.storage.incr(_key(item, kind, client), item.get_expiry())

    async def _hit(
        self, item: RateLimitItem, kind: str, client: str, *, counted: bool = False
    ) -> Decision:
        key = _key(item, kind, client)
        try:
            if counted:
                count = await self.storage.get(key)
            else:
                count = await self.storage.incr(key, item.get_expiry())
            reset_at = await self.storage.get_expiry(key)
        except StorageError as exc:
            return self._unavailable(item, exc)
        return Decision(count <= item.amount, item.amount, max(0, item.amount - count), reset_at)

    def _unavailable(self, item: RateLimitItem, exc: StorageError) -> Decision:
        self._warn_unavailable(exc)
        return Decision(True, item.amount, item.amount, time.time() + item.get_expiry())

    def _warn_unavailable(self, exc: StorageError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning(
                "Rate limit store unavailable (%s); requests pass unlimited until it is back.",
                exc.storage_error,
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        timer = getattr(self.storage, "timer", None)
        if timer is not None and not timer.done():
            timer.cancel()


class RateLimitMiddleware:
    """Applies :class:`RateLimiter` to ``/api`` requests and ``/ws`` handshakes, except the
    ``exempt`` paths (the metrics path, wherever it is mounted).

    Refused requests get 429 with ``Retry-After`` and the error envelope; every limited response
    carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (UTC epoch
    seconds). A refused handshake gets 429 where the server supports WebSocket denial responses,
    else a plain refusal (403).
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, exempt: frozenset[str]) -> None:
        self.app = app
        self.limiter = limiter
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path: str = scope.get("path", "")
        if kind == "http" and path.startswith("/api/") and path not in self.exempt:
            decision = await self.limiter.hit(
                self.limiter.client_address(scope), history=is_history_path(path)
            )
            if decision.allowed:
                await self.app(scope, receive, _with_headers(send, decision.headers()))
            else:
                _count_refusal(scope, "history" if is_history_path(path) else "api")
                await _refuse(decision, scope, receive, send)
        elif kind == "websocket" and path.startswith("/ws/"):
            decision = await self.limiter.hit(self.limiter.client_address(scope))
            if decision.allowed:
                await self.app(scope, receive, send)
                return
            _count_refusal(scope, "websocket")
            if "websocket.http.response" in scope.get("extensions", {}):
                await _refuse(decision, scope, receive, send, prefix="websocket.")
            else:
                await send({"type": "websocket.close", "code": 1008})
        else:
            await self.app(scope, receive, send)


def _count_refusal(scope: Scope, limit: RateLimitScope) -> None:
    metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
    if metrics is not None:
        metrics.rate_limited(limit)


def _key(item: RateLimitItem, kind: str, client: str) -> str:
    return f"{kind}/{item.amount}/minute/{client}"


def is_history_path(path: str) -> bool:
    """``/api/charts/{chart_id}/history`` and ``/api/charts/{chart_id}/history/...``."""
    parts = path.split("/", 6)
    return len(parts) > 4 and parts[2] == "charts" and parts[4] == "history"


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers


async def _refuse(
    decision: Decision, scope: Scope, receive: Receive, send: Send, *, prefix: str = ""
) -> None:
    what = "history requests" if is_history_path(scope["path"]) else "requests"
    response = error_response(429, decision.message(what), "RATE_LIMITED")
    response.raw_headers.extend(decision.headers())
    body = response.body
    await send(
        {
            "type": prefix + "http.response.start",
            "status": 429,
            "headers": response.raw_headers,
        }
    )
    await send({"type": prefix + "http.response.body", "body": body})
