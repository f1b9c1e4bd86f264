"""Per-client rate limits: counted in the process, or shared by every worker and replica through
Redis without a round trip per request.

Two fixed one-minute windows per client address: ``RATE_LIMIT_PER_MINUTE`` for every request
under ``/api`` and the UDF datafeed's ``UDF_PATH`` and every WebSocket handshake under ``/ws``, and
``RATE_LIMIT_HISTORY_PER_MINUTE`` for history (the REST history routes, the datafeed's history,
and ``request_history`` frames on a socket, which the
WebSocket handler checks with :meth:`RateLimiter.hit_history`). Health and metrics are never
limited.

The client address is the socket peer, unless the peer is in ``TRUSTED_PROXIES``: then it is the
right-most ``X-Forwarded-For`` hop that is not itself a trusted proxy, since every hop left of it
was written by a party nobody vouches for.

With ``REDIS_URL`` (:class:`SharedWindows`) the windows are one-minute windows aligned to the
clock, counted in each process and exchanged with Redis in the background; a process decides
alone while it holds credit, a share of what remains of the limit, and asks Redis (one pipelined
round trip) once its credit is spent. When Redis cannot be reached each process limits on its own
counts and a warning is logged (at most once a minute): an outage of the limiter's store must not
take the API down with it, nor lift the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from limits import RateLimitItem, RateLimitItemPerMinute
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
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
#: The scope key telling :func:`refuse` whether the refused request counted against the history
#: limit and whether it is the UDF datafeed's.
REFUSAL_KEY: Final = "charts.rate_limit.refusal"
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
#: Clients whose counts a process keeps at most: past it, the ended windows go at once and, if
#: that frees nothing, the oldest half of the records (a flood of addresses costs no more).
MAX_CLIENT_RECORDS: Final = 100_000
_API_ONLY: Final = (1,)
_HISTORY_ONLY: Final = (3,)
_API_AND_HISTORY: Final = (1, 3)


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


#: What :meth:`RateLimiter.admit_shared` answers when only Redis can decide.
UNDECIDED: Final = Decision(True, 0, 0, 0.0)


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
            if len(host) > _MAX_ADDRESS_LENGTH:
                return False  # not an address; and not worth remembering
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
                # Only an address names a client: anything else a proxy passed on (a name, a
                # token, kilobytes of junk) leaves the request to the proxy's own address.
                address = _parse_ip(hop) if len(hop) <= _MAX_ADDRESS_LENGTH else None
                return str(address) if address is not None else peer
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

    def __init__(
        self,
        seconds: float,
        clock: Callable[[], float] = time.time,
        max_records: int = MAX_CLIENT_RECORDS,
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self.max_records = max_records
        self.records: dict[str, list[Any]] = {}
        self._next_sweep = clock() + self.SWEEP_SECONDS

    def record(self, client: str, now: float) -> list[Any]:
        """``client``'s record, made (with both windows ended) if it has none."""
        record = self.records.get(client)
        if record is None:
            if now >= self._next_sweep or len(self.records) >= self.max_records:
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
        records = {
            client: record
            for client, record in self.records.items()
            if record[1] > now or record[4] > now
        }
        if len(records) >= self.max_records:
            records = dict(list(records.items())[len(records) // 2 :])
        self.records = records
        self._next_sweep = now + self.SWEEP_SECONDS

    def __len__(self) -> int:
        return len(self.records)

    def clients(self) -> int:
        """Clients with a window still open."""
        now = self.clock()
        return sum(
            1 for record in list(self.records.values()) if record[1] > now or record[4] > now
        )


class SharedWindows:
    """Fixed one-minute windows aligned to the clock, shared by every process through Redis.

    A client's record is ``[window, API hits not yet sent, API total last heard, history hits
    not yet sent, history total last heard]``; ``API`` and ``HISTORY`` are the offsets of the
    two windows in it. A hit is decided in this process while the hits it has not sent stay
    below its credit, ``(limit - total last heard) // (4 x processes)``; past it, the hit is
    sent with the unsent ones and decided on the total Redis answers (:meth:`hit_remote`). A
    background task sends every process's unsent hits every ``SYNC_SECONDS`` and keeps count
    of the processes sharing the limits (a sorted set of heartbeats).

    Overshoot: a hit decided by Redis is exact over the hits sent; the hits admitted on credit
    and not yet sent are at most ``processes x (limit // (4 x processes))`` in all, so no more
    than that many requests (at most a quarter of the limit) pass beyond it in a window.
    """

    API: Final = 1
    HISTORY: Final = 3
    SECONDS: Final = 60
    SYNC_SECONDS: Final = 0.1
    #: A process not heard of for this long no longer counts as sharing the limits.
    PEER_TTL_SECONDS: Final = 5.0

    def __init__(
        self,
        redis_url: str,
        limits: dict[int, int],
        *,
        prefix: str = "charts-ratelimit",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.prefix = prefix
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.redis: Redis = Redis.from_url(
            redis_url,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
            client_name=f"charts-ratelimit-{os.getpid()}",
        )
        self.records: dict[str, list[int]] = {}
        self.processes = 1
        #: Whether Redis answered the last exchange; while not, each process counts alone.
        self.available = True
        self._unsent: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._warned_at = -math.inf
        self._swept_window = -1

    def window(self, now: float) -> int:
        return int(now // self.SECONDS)

    def record(self, client: str, window: int) -> list[int]:
        record = self.records.get(client)
        if record is None or record[0] != window:
            if record is None and len(self.records) >= MAX_CLIENT_RECORDS:
                self._evict(window)
            record = self.records[client] = [window, 0, 0, 0, 0]
        return record

    def credit(self, offset: int, known: int) -> int:
        if not self.available:
            return self.limits[offset]  # alone: every hit is decided here
        return max(0, self.limits[offset] - known) // (4 * self.processes)

    def hit_local(self, client: str, offsets: tuple[int, ...]) -> tuple[int, int, float] | None:
        """Count one hit of ``client`` in the windows at ``offsets``, in turn, stopping at the
        first window over its limit: that window's offset, its count and its end (epoch s).
        ``None``, with nothing counted, when a window's credit is spent: :meth:`hit_remote`."""
        now = self.clock()
        window = self.window(now)
        record = self.record(client, window)
        for offset in offsets:
            unsent, known = record[offset], record[offset + 1]
            if unsent >= self.credit(offset, known) and known + unsent < self.limits[offset]:
                return None
        for offset in offsets:
            record[offset] += 1
            count = record[offset] + record[offset + 1]
            if count > self.limits[offset]:
                break
        self._unsent.add(client)
        return offset, count, (window + 1) * self.SECONDS

    async def hit_remote(self, client: str, offsets: tuple[int, ...]) -> tuple[int, int, float]:
        """:meth:`hit_local` decided by Redis: this hit and the unsent ones are sent, and the
        totals answered decide (or this process's own counts, when Redis cannot answer)."""
        window = self.window(self.clock())
        record = self.record(client, window)
        for offset in offsets:
            sent = record[offset] + 1
            record[offset] = 0
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hincrby(self._key(window), self._field(offset, client), sent)
                    pipe.expire(self._key(window), 2 * self.SECONDS)
                    total, _ = await pipe.execute()
            except (RedisError, OSError) as exc:
                if _maybe_applied(exc):
                    record[offset + 1] += sent
                else:
                    record[offset] += sent
                    self._unsent.add(client)
                self._unavailable(exc)
                count = record[offset] + record[offset + 1]
            else:
                self.available = True
                # This hit is decided by its own place in the window. Several exchanges of one
                # process may be in flight and answer out of order: the highest total heard so
                # far is what later local decisions start from, but it is not this hit's count.
                count = int(total)
                record[offset + 1] = max(record[offset + 1], count)
            if count > self.limits[offset]:
                break
        return offset, count, (window + 1) * self.SECONDS

    async def start(self) -> None:
        """Join the processes sharing the limits, then exchange counts in the background."""
        await self.sync()
        self._task = asyncio.create_task(self._run(), name="rate-limit-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(self._peers_key, self.origin)
        await self.redis.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.SYNC_SECONDS)
            await self.sync()

    async def sync(self) -> None:
        """Send the unsent hits of every client and learn their totals; now and then, say
        that this process is alive and count the processes that are."""
        now = self.clock()
        window = self.window(now)
        clients, self._unsent = self._unsent, set()
        sent: list[tuple[list[int], int, int]] = []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for client in clients:
                    record = self.records.get(client)
                    if record is None or record[0] != window:
                        continue
                    for offset in (self.API, self.HISTORY):
                        sent.append((record, offset, record[offset]))
                        pipe.hincrby(self._key(window), self._field(offset, client), record[offset])
                        record[offset] = 0
                if sent:
                    pipe.expire(self._key(window), 2 * self.SECONDS)
                # The credit of a process depends on how many share the limits: recounted at
                # every exchange, so that a process that just started is known within 0.1 s.
                pipe.zadd(self._peers_key, {self.origin: now})
                pipe.zremrangebyscore(self._peers_key, "-inf", now - self.PEER_TTL_SECONDS)
                pipe.zcard(self._peers_key)
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            applied = _maybe_applied(exc)
            for record, offset, count in sent:
                record[offset + (1 if applied else 0)] += count
            if not applied:
                self._unsent |= clients
            self._unavailable(exc)
            return
        self.available = True
        for (record, offset, _), total in zip(sent, results, strict=False):
            record[offset + 1] = max(record[offset + 1], int(total))
        self.processes = max(1, int(results[-1]))
        if window != self._swept_window:
            self._evict(window)

    def _evict(self, window: int) -> None:
        """Drop the records of ended windows; when all are current, the oldest half."""
        self._swept_window = window
        kept = {c: r for c, r in self.records.items() if r[0] == window}
        if len(kept) >= MAX_CLIENT_RECORDS:
            kept = dict(list(kept.items())[len(kept) // 2 :])
        self.records = kept

    def clients(self) -> int:
        window = self.window(self.clock())
        return sum(1 for record in list(self.records.values()) if record[0] == window)

    @property
    def _peers_key(self) -> str:
        return f"{self.prefix}:processes"

    def _key(self, window: int) -> str:
        return f"{self.prefix}:{window}"

    @staticmethod
    def _field(offset: int, client: str) -> str:
        return ("api/" if offset == SharedWindows.API else "history/") + client

    def _unavailable(self, exc: Exception) -> None:
        self.available = False
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning(
                "Rate limit store unavailable (%s); each process limits on its own counts until "
                "it is back.",
                exc,
            )


def _maybe_applied(exc: Exception) -> bool:
    """Whether Redis may have counted what a failed exchange sent: when the answer timed out,
    the counts are taken as sent rather than sent twice (a limit errs towards letting through)."""
    return isinstance(exc, RedisTimeoutError | TimeoutError)


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
        # Both limits are per minute.
        self._local = LocalWindows(float(self.api.get_expiry()))
        self._shared: SharedWindows | None = None
        if settings.redis_url:
            self._shared = SharedWindows(
                settings.redis_url,
                {SharedWindows.API: self.api.amount, SharedWindows.HISTORY: self.history.amount},
            )
        self._api_limit = b"%d" % self.api.amount
        self._history_limit = b"%d" % self.history.amount
        #: Whether allowed requests get the limit headers too (``RATE_LIMIT_HEADERS``); a
        #: refusal always carries them, with ``Retry-After``.
        self.headers = settings.rate_limit_headers

    async def start(self) -> None:
        if self._shared is not None:
            await self._shared.start()

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()

    async def hit(self, client: str, *, history: bool = False) -> Decision:
        """Count one API request from ``client`` (and one history request when ``history``);
        the decision of the tighter limit comes back."""
        shared = self._shared
        if shared is None:
            return self.hit_local(client, history)
        offsets = _API_AND_HISTORY if history else _API_ONLY
        outcome = shared.hit_local(client, offsets) or await shared.hit_remote(client, offsets)
        return self._shared_decision(outcome)

    async def hit_history(self, client: str) -> Decision:
        """Count one history request from ``client`` (a ``request_history`` frame)."""
        shared = self._shared
        if shared is None:
            count, reset_at = self._local.hit(client, LocalWindows.HISTORY)
            return self._decide(self.history, count, reset_at)
        outcome = shared.hit_local(client, _HISTORY_ONLY) or await shared.hit_remote(
            client, _HISTORY_ONLY
        )
        return self._shared_decision(outcome)

    def _shared_decision(self, outcome: tuple[int, int, float]) -> Decision:
        offset, count, reset_at = outcome
        item = self.api if offset == SharedWindows.API else self.history
        return self._decide(item, count, reset_at)

    def clients(self) -> int:
        """Clients with a window open in this process."""
        return self._local.clients() if self._shared is None else self._shared.clients()

    @property
    def local(self) -> bool:
        """Whether the counts are kept in this process alone (no ``REDIS_URL``)."""
        return self._shared is None

    def admit_shared(self, client: str, history: bool, headers: Headers) -> Decision | None:
        """:meth:`admit_local` for limits shared through Redis; :data:`UNDECIDED` when this
        process cannot decide alone (:meth:`hit` must)."""
        shared = self._shared
        assert shared is not None
        outcome = shared.hit_local(client, _API_AND_HISTORY if history else _API_ONLY)
        if outcome is None:
            return UNDECIDED
        decision = self._shared_decision(outcome)
        if not decision.allowed:
            return decision
        if self.headers:
            headers += decision.headers()
        return None

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


class RateLimitGate:
    """Decides, for the outermost middleware, whether a request may go on.

    Limits ``/api`` and ``udf_path`` requests and ``/ws`` handshakes, except the ``exempt``
    paths (the metrics path, wherever it is mounted). The middleware puts
    :meth:`Decision.headers` on a refusal (``X-RateLimit-Limit``, ``X-RateLimit-Remaining``,
    ``X-RateLimit-Reset`` in UTC epoch seconds, and ``Retry-After``), and the first three on
    every limited request when ``RATE_LIMIT_HEADERS`` is set (they cost uvicorn a check and a
    write each), and hands a refused request to ``refusal``: 429 with the error envelope
    (with UDF's ``s`` and ``errmsg`` on the datafeed's paths), through CORS so that browsers can
    read it. A refused handshake gets 429 where the server supports WebSocket denial
    responses, else a plain refusal (403).

    Deciding in the outermost layer rather than in a middleware of its own saves a layer on
    every request: the limiter is on the path of every history request a chart scrolls with.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        exempt: frozenset[str],
        refusal: ASGIApp | None = None,
        *,
        udf_path: str | None = None,
    ) -> None:
        self.limiter = limiter
        self.exempt = exempt
        # The UDF datafeed counts as the API, its history as history too.
        self._prefixes = ("/api/",) if udf_path is None else ("/api/", udf_path + "/")
        self._udf = "\0" if udf_path is None else udf_path + "/"
        self._udf_history = None if udf_path is None else udf_path + "/history"
        self.refusal: ASGIApp = refusal if refusal is not None else refuse
        self._local = limiter.local
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
            history = self.is_history(path)
            decision = await limiter.hit(limiter.client_address(scope), history=history)
            if not decision.allowed:
                scope[REFUSAL_KEY] = (history, path.startswith(self._udf))
            return decision
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

    def admit_now(self, scope: Scope, headers: Headers) -> bool | None:
        """:meth:`admit` with nothing to await, as the limiter is on the path of every history
        request a chart scrolls with; ``None`` when only Redis can decide (then :meth:`admit`)."""
        path: str = scope["path"]
        kind = self._kinds.get(path)
        if kind is None:
            kind = self._kind(path)
        if kind == _UNLIMITED:
            return True
        limiter = self.limiter
        client = limiter.client_address(scope)
        if self._local:
            refused = limiter.admit_local(client, kind == _HISTORY, headers)
        else:
            refused = limiter.admit_shared(client, kind == _HISTORY, headers)
            if refused is UNDECIDED:
                return None
        if refused is None:
            return True
        headers += refused.headers()
        scope[DECISION_KEY] = refused
        scope[REFUSAL_KEY] = (kind == _HISTORY, path.startswith(self._udf))
        return False

    def limits(self, path: str) -> bool:
        """Whether HTTP requests for ``path`` count against a limit."""
        return path.startswith(self._prefixes) and path not in self.exempt

    def is_history(self, path: str) -> bool:
        """Whether ``path`` (a limited one) counts against the history limit too."""
        return is_history_path(path) or path == self._udf_history

    def _kind(self, path: str) -> int:
        if not self.limits(path):
            return _UNLIMITED
        kind = _HISTORY if self.is_history(path) else _API
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
    history, udf = scope.get(REFUSAL_KEY) or (is_history_path(path), False)
    if scope["type"] == "websocket":
        _count_refusal(scope, "websocket")
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        send = _with_headers(send, decision.headers())
        prefix = "websocket."
    else:
        _count_refusal(scope, "history" if history else "api")
        prefix = ""
    message = decision.message("history requests" if history else "requests")
    # The UDF datafeed's adapter reads only "s" and "errmsg" of whatever it gets.
    extra = {"s": "error", "errmsg": message} if udf else None
    response = error_response(429, message, "RATE_LIMITED", extra=extra)
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


def is_history_path(path: str) -> bool:
    """``/api/charts/{chart_id}/history`` and ``/api/charts/{chart_id}/history/...``."""
    return _HISTORY_PATH.match(path) is not None


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "websocket.http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers
