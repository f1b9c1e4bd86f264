"""Per-client rate limits: counted in the process, or in Redis (through the ``limits`` library)
shared by every worker.

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
import re
import time
from collections.abc import Callable
from typing import Any, Final

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
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
#: The scope key of a refused request's :class:`Decision`, for :func:`refuse`.
DECISION_KEY: Final = "charts.rate_limit"
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LIMIT_HEADER: Final = b"x-ratelimit-limit"
REMAINING_HEADER: Final = b"x-ratelimit-remaining"
RESET_HEADER: Final = b"x-ratelimit-reset"
#: ``/api/charts/{chart_id}/history`` and everything under it.
_HISTORY_PATH: Final = re.compile(r"/api/charts/[^/]*/history(?:/|\Z)")
Headers = list[tuple[bytes, bytes]]
# What an HTTP path counts against (RateLimitGate); at most _KNOWN_PATHS paths are remembered.
_UNLIMITED: Final = 0
_API: Final = 1
_HISTORY: Final = 2
_KNOWN_PATHS: Final = 4096
_KNOWN_PATH_LENGTH: Final = 256


class Decision:
    """The outcome of one hit: whether it is allowed and the window's state after it."""

    __slots__ = ("allowed", "limit", "remaining", "reset_at")

    def __init__(self, allowed: bool, limit: int, remaining: int, reset_at: float) -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset_at = reset_at

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (LIMIT_HEADER, b"%d" % self.limit),
            (REMAINING_HEADER, b"%d" % self.remaining),
            (RESET_HEADER, b"%d" % math.ceil(self.reset_at)),
        ]
        if not self.allowed:
            headers.append((b"retry-after", b"%d" % self.retry_after))
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


class LocalWindows:
    """Fixed windows counted in this process, two per client: its API and its history requests.

    A client's record is ``[API count, API window end, that end as the bytes of the
    X-RateLimit-Reset header, history count, history window end, its header bytes]``; ``API``
    and ``HISTORY`` are the offsets of the two windows in it. A window opens with its first hit
    and lasts ``seconds``, as ``limits``' fixed-window strategy counts in Redis. Records whose
    windows have both ended are dropped when a new client comes, at most once per
    ``SWEEP_SECONDS``, so memory holds the clients of the last minute or two.

    Plain list work on the event loop: ``limits``' in-memory storage starts an asyncio task to
    expire keys on every increment, which cost more than the rest of a history request's
    limiting; one record per client costs one lookup for both of its limits.
    """

    API: Final = 0
    HISTORY: Final = 3
    SWEEP_SECONDS: Final = 60.0

    def __init__(self, seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.seconds = seconds
        self.clock = clock
        self.records: dict[str, list[Any]] = {}
        self._next_sweep = clock() + self.SWEEP_SECONDS

    def record(self, client: str, now: float) -> list[Any]:
        """``client``'s record, made (with both windows ended) if it has none."""
        record = self.records.get(client)
        if record is None:
            if now >= self._next_sweep:
                self._sweep(now)
            record = self.records[client] = [0, 0.0, b"0", 0, 0.0, b"0"]
        return record

    def reopen(self, record: list[Any], window: int, now: float) -> None:
        """Start the ``window`` (``API`` or ``HISTORY``) of ``record`` again at ``now``."""
        end = now + self.seconds
        record[window : window + 3] = [0, end, b"%d" % math.ceil(end)]

    def hit(self, client: str, window: int) -> tuple[int, float]:
        """Count one hit of ``client`` in its ``window``: the count in the window and the
        window's end (epoch s)."""
        now = self.clock()
        record = self.record(client, now)
        if record[window + 1] <= now:
            self.reopen(record, window, now)
        record[window] += 1
        return record[window], record[window + 1]

    def _sweep(self, now: float) -> None:
        self.records = {
            client: record
            for client, record in self.records.items()
            if record[1] > now or record[4] > now
        }
        self._next_sweep = now + self.SWEEP_SECONDS

    def __len__(self) -> int:
        return len(self.records)

    def clients(self) -> int:
        """Clients with a window still open."""
        now = self.clock()
        return sum(
            1 for record in list(self.records.values()) if record[1] > now or record[4] > now
        )


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
        self._redis: RedisStorage | None = None
        # Both limits are per minute.
        self._local = LocalWindows(float(self.api.get_expiry()))
        self._api_limit = b"%d" % self.api.amount
        self._history_limit = b"%d" % self.history.amount
        #: Whether allowed requests get the limit headers too (``RATE_LIMIT_HEADERS``); a
        #: refusal always carries them, with ``Retry-After``.
        self.headers = settings.rate_limit_headers
        if settings.redis_url:
            # The worker's pid in the client name tells operators (and the tests) which worker
            # holds which connection in Redis' CLIENT LIST.
            self._pool = ConnectionPool.from_url(
                settings.redis_url, client_name=f"charts-ratelimit-{os.getpid()}"
            )
            self._redis = RedisStorage(
                storage_uri(settings.redis_url),
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix="charts-ratelimit",
                # limits passes this through to redis.asyncio.Redis; its stub types options
                # as scalars.
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
        self._warned_at = -math.inf

    async def hit(self, client: str, *, history: bool = False) -> Decision:
        """Count one API request from ``client`` (and one history request when ``history``);
        the decision of the tighter limit comes back."""
        if self._redis is None:
            return self.hit_local(client, history)
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
        """Count one history request from ``client`` (a ``request_history`` frame)."""
        if self._redis is None:
            count, reset_at = self._local.hit(client, LocalWindows.HISTORY)
            return self._decide(self.history, count, reset_at)
        return await self._hit(self.history, "history", client)

    def clients(self) -> int | None:
        """Clients with a window open in this process; ``None`` when Redis keeps the counts."""
        return self._local.clients() if self._redis is None else None

    @property
    def local(self) -> bool:
        """Whether the counts are kept in this process (no ``REDIS_URL``): then
        :meth:`hit_local` decides without awaiting anything."""
        return self._redis is None

    def hit_local(self, client: str, history: bool = False) -> Decision:
        """:meth:`hit`, for a limiter that counts in this process."""
        local = self._local
        item = self.api
        count, reset_at = local.hit(client, LocalWindows.API)
        if history and count <= item.amount:
            item = self.history
            count, reset_at = local.hit(client, LocalWindows.HISTORY)
        return self._decide(item, count, reset_at)

    def admit_local(self, client: str, history: bool, headers: Headers) -> Decision | None:
        """:meth:`hit_local` for the middleware: ``None`` when the request may go on, with the
        limit headers appended to ``headers``; the refusal's :class:`Decision` otherwise.

        On the path of every limited request, so :meth:`LocalWindows.hit` is spelled out here:
        one lookup for both windows, and the header values that do not change kept as bytes.
        """
        local = self._local
        now = local.clock()
        record = local.records.get(client)
        if record is None:
            record = local.record(client, now)
        if record[1] <= now:
            local.reopen(record, LocalWindows.API, now)
        record[0] += 1
        if history and record[0] <= self.api.amount:
            if record[4] <= now:
                local.reopen(record, LocalWindows.HISTORY, now)
            record[3] += 1
            item, window, limit = self.history, LocalWindows.HISTORY, self._history_limit
        else:
            item, window, limit = self.api, LocalWindows.API, self._api_limit
        count = record[window]
        if count > item.amount:
            return self._decide(item, count, record[window + 1])
        if self.headers:
            headers += (
                (LIMIT_HEADER, limit),
                (REMAINING_HEADER, b"%d" % (item.amount - count)),
                (RESET_HEADER, record[window + 2]),
            )
        return None

    @staticmethod
    def _decide(item: RateLimitItem, count: int, reset_at: float) -> Decision:
        return Decision(count <= item.amount, item.amount, max(0, item.amount - count), reset_at)

    async def _count(self, item: RateLimitItem, kind: str, client: str) -> int:
        # The fixed-window strategy (``FixedWindowRateLimiter.hit``) spelled out on the storage.
        assert self._redis is not None
        return await self._redis.incr(_key(item, kind, client), item.get_expiry())

    async def _hit(
        self, item: RateLimitItem, kind: str, client: str, *, counted: bool = False
    ) -> Decision:
        storage = self._redis
        assert storage is not None
        key = _key(item, kind, client)
        try:
            if counted:
                count = await storage.get(key)
            else:
                count = await storage.incr(key, item.get_expiry())
            reset_at = await storage.get_expiry(key)
        except StorageError as exc:
            return self._unavailable(item, exc)
        return self._decide(item, count, reset_at)

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


class RateLimitGate:
    """Decides, for the outermost middleware, whether a request may go on.

    Limits ``/api`` requests and ``/ws`` handshakes, except the ``exempt`` paths (the metrics
    path, wherever it is mounted). The middleware puts :meth:`Decision.headers` on a refusal
    (``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` in UTC epoch seconds,
    and ``Retry-After``), and the first three on every limited request when ``RATE_LIMIT_HEADERS``
    is set (they cost uvicorn a check and a write each), and hands a refused request to
    ``refusal``: 429 with the
    error envelope, through CORS so that browsers can read it. A refused handshake gets 429 where
    the server supports WebSocket denial responses, else a plain refusal (403).

    Deciding in the outermost layer rather than in a middleware of its own saves a layer on
    every request: the limiter is on the path of every history request a chart scrolls with.
    """

    def __init__(
        self, limiter: RateLimiter, exempt: frozenset[str], refusal: ASGIApp | None = None
    ) -> None:
        self.limiter = limiter
        self.exempt = exempt
        self.refusal: ASGIApp = refusal if refusal is not None else refuse
        #: Counts kept in this process: :meth:`admit_local` decides.
        self.local = limiter.local
        # What each recently seen path counts against: a chart scrolling back asks for the
        # same path again and again (the times are in the query).
        self._kinds: dict[str, int] = {}

    async def decide(self, scope: Scope) -> Decision | None:
        """Count the request or handshake of ``scope``; ``None`` when its path is not limited."""
        path: str = scope["path"]
        limiter = self.limiter
        if scope["type"] == "http":
            if not self.limits(path):
                return None
            return await limiter.hit(limiter.client_address(scope), history=is_history_path(path))
        if path.startswith("/ws/"):
            return await limiter.hit(limiter.client_address(scope))
        return None

    async def admit(self, scope: Scope, headers: Headers) -> bool:
        """Count the HTTP request of ``scope``: whether it may go on. The limit headers are
        appended to ``headers``; a refused request's decision is kept in
        ``scope[DECISION_KEY]`` for ``refusal``."""
        decision = await self.decide(scope)
        if decision is None:
            return True
        if decision.allowed:
            if self.limiter.headers:
                headers += decision.headers()
            return True
        headers += decision.headers()
        scope[DECISION_KEY] = decision
        return False

    def admit_local(self, scope: Scope, headers: Headers) -> bool:
        """:meth:`admit` when the counts are kept in this process (``local``), with nothing
        to await: the limiter is on the path of every history request a chart scrolls with."""
        path: str = scope["path"]
        kind = self._kinds.get(path)
        if kind is None:
            kind = self._kind(path)
        if kind == _UNLIMITED:
            return True
        limiter = self.limiter
        refused = limiter.admit_local(limiter.client_address(scope), kind == _HISTORY, headers)
        if refused is None:
            return True
        headers += refused.headers()
        scope[DECISION_KEY] = refused
        return False

    def limits(self, path: str) -> bool:
        """Whether HTTP requests for ``path`` count against a limit."""
        return path.startswith("/api/") and path not in self.exempt

    def _kind(self, path: str) -> int:
        if not self.limits(path):
            return _UNLIMITED
        kind = _HISTORY if is_history_path(path) else _API
        # Only short API paths are remembered: a client cannot fill memory with long ones.
        if len(path) <= _KNOWN_PATH_LENGTH:
            if len(self._kinds) >= _KNOWN_PATHS:
                self._kinds.clear()
            self._kinds[path] = kind
        return kind


async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request refused by its limit (``scope[DECISION_KEY]``): the 429
    envelope; the outermost middleware adds the limit headers."""
    decision: Decision = scope[DECISION_KEY]
    path = scope["path"]
    if scope["type"] == "websocket":
        _count_refusal(scope, "websocket")
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        send = _with_headers(send, decision.headers())
        prefix = "websocket."
    else:
        _count_refusal(scope, "history" if is_history_path(path) else "api")
        prefix = ""
    what = "history requests" if is_history_path(path) else "requests"
    response = error_response(429, decision.message(what), "RATE_LIMITED")
    await send(
        {
            "type": prefix + "http.response.start",
            "status": 429,
            "headers": response.raw_headers,
        }
    )
    await send({"type": prefix + "http.response.body", "body": response.body})


def _count_refusal(scope: Scope, limit: RateLimitScope) -> None:
    metrics = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
    if metrics is not None:
        metrics.rate_limited(limit)


def _key(item: RateLimitItem, kind: str, client: str) -> str:
    return f"{kind}/{item.amount}/minute/{client}"


def is_history_path(path: str) -> bool:
    """``/api/charts/{chart_id}/history`` and ``/api/charts/{chart_id}/history/...``."""
    return _HISTORY_PATH.match(path) is not None


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "websocket.http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers
