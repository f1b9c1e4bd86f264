"""The database: SQLAlchemy 2 async models and the engine the app builds in its lifespan.

Three tables hold the charts. ``charts`` (one row per chart, with its options, version and the
times it was created, changed and last read), ``series`` (one row per series, with a surrogate
key and the count and time range of its points) and ``points`` (one row per point, primary key
``(series_pk, time)``, the point's fields as the JSON the client sent, times normalized).
``api_keys`` holds the API keys, as hashes (``keytable.DatabaseKeyStore``). ``annotations`` holds
the drawings and markers of each chart (their wire JSON, and the columns queries filter on,
indexed by chart and time span), ``annotation_heads`` each chart's annotation count and the
sequence number of its last annotation change (``annotations/repository.py``). ``saved_layouts``
holds what the TradingView save/load API stores: chart layouts, study and drawing templates
(``saveload/store.py``).

Nothing connects at import time: ``Database.from_settings`` builds the engine, and the app does
that in its lifespan. Queries live in ``charts/repository.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import asyncmy.errors
import asyncpg
import pymysql
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    event,
    inspect,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from .config import Settings
from .errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The Alembic revision the models correspond to; tables created at startup are stamped with it
#: so that ``alembic upgrade head`` afterwards has nothing to do.
SCHEMA_REVISION: Final = "0006"
#: Older revisions whose databases startup brings to the head: by adding the tables created
#: since, then the unique template names of revision 0005 (``add_template_names``) and the
#: series' ``market`` and ``aggregation`` columns of revision 0006.
UPGRADABLE_REVISIONS: Final = ("0001", "0002", "0003", "0004", "0005")
TEMPLATE_NAME_INDEX: Final = "ix_saved_layouts_client_user_id_kind_tool_template_name"
#: Columns of ``series`` added after the table was first created (0006).
_SERIES_COLUMNS_SINCE: Final = ("market", "aggregation")

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}

# Ids are ASCII (see charts.service.ID_PATTERN) and compared case-sensitively, which MySQL's
# default collations do not do.
Identifier = String(128).with_variant(
    mysql.VARCHAR(128, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)
# Long JSON text: MySQL's TEXT stops at 64 KiB.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")


class PointJSON(TypeDecorator[str]):
    """A point's JSON text, kept in the dialect's JSON column type and passed through as text.

    The store holds points as encoded JSON, so neither side of the database parses it. On
    PostgreSQL the driver codec would still decode ``json`` values; the repository selects them
    cast to text.
    """

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_MYSQL_TABLE: Final = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


class ChartModel(Base):
    __tablename__ = "charts"
    __table_args__ = (Index(None, "accessed_at"), _MYSQL_TABLE)

    id: Mapped[str] = mapped_column(Identifier, primary_key=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[float] = mapped_column(Double, nullable=False)
    updated_at: Mapped[float] = mapped_column(Double, nullable=False)
    accessed_at: Mapped[float] = mapped_column(Double, nullable=False)


class SeriesModel(Base):
    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("chart_id", "pane_id", "series_id"), _MYSQL_TABLE)

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    chart_id: Mapped[str] = mapped_column(
        Identifier, ForeignKey("charts.id", ondelete="CASCADE"), nullable=False
    )
    pane_id: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    series_id: Mapped[str] = mapped_column(Identifier, nullable=False)
    series_type: Mapped[str] = mapped_column(String(16), nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    point_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    first_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: The market calendar (timezone, session, symbol metadata) as the client sent it.
    market: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: How a value series' bars aggregate ``value`` (None: the series type's rule).
    aggregation: Mapped[str | None] = mapped_column(String(8), nullable=True)


class PointModel(Base):
    """One point. No foreign key to ``series``: checking one per row would slow bulk loads
    (COPY of a million points) noticeably, and the repository deletes points with their series.
    """

    __tablename__ = "points"
    __table_args__ = ({"sqlite_with_rowid": False, **_MYSQL_TABLE},)

    series_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    data: Mapped[str] = mapped_column(PointJSON, nullable=False)


class ApiKeyModel(Base):
    """An API key: never the secret, only its SHA-256 (``sha256:<hex>``). Times are epoch
    seconds, as in the other tables."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_hash"), _MYSQL_TABLE)

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(71), nullable=False)
    chart_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    scopes: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Double, nullable=True)


class AnnotationModel(Base):
    """An annotation of a chart: ``body`` is its wire JSON, the other columns what queries filter
    on. ``start_time``/``end_time`` is the time span of its anchors (the extremes of valid times
    for lines without end), indexed with the chart so that a visible range is a range scan."""

    __tablename__ = "annotations"
    __table_args__ = (Index(None, "chart_id", "end_time", "start_time"), _MYSQL_TABLE)

    chart_id: Mapped[str] = mapped_column(
        Identifier, ForeignKey("charts.id", ondelete="CASCADE"), primary_key=True
    )
    annotation_id: Mapped[str] = mapped_column(Identifier, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    pane_id: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    series_id: Mapped[str | None] = mapped_column(Identifier, nullable=True)
    visibility: Mapped[str] = mapped_column(String(8), nullable=False)
    owner: Mapped[str] = mapped_column(String(255), nullable=False)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    start_time: Mapped[int] = mapped_column(BigInteger, nullable=False)
    end_time: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[float] = mapped_column(Double, nullable=False)
    updated_at: Mapped[float] = mapped_column(Double, nullable=False)
    body: Mapped[str] = mapped_column(LongText, nullable=False)


class AnnotationHeadModel(Base):
    """Per chart with annotations: how many it holds and the sequence number of the last change
    (the order in which sockets receive them)."""

    __tablename__ = "annotation_heads"
    __table_args__ = (_MYSQL_TABLE,)

    chart_id: Mapped[str] = mapped_column(
        Identifier, ForeignKey("charts.id", ondelete="CASCADE"), primary_key=True
    )
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)


class SavedLayoutModel(Base):
    """A chart layout (``kind`` ``chart``), study template or drawing template (``tool`` names the
    drawing tool) saved by a user of a TradingView client through the save/load API.

    ``template_name`` is a template's name, unique per owner, kind and tool, so that saving one
    is an upsert; chart layouts, whose names may repeat, leave it NULL (never equal in a unique
    index)."""

    __tablename__ = "saved_layouts"
    __table_args__ = (
        Index(None, "client", "user_id", "kind", "tool", "name"),
        Index(None, "client", "user_id", "kind", "tool", "template_name", unique=True),
        _MYSQL_TABLE,
    )

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    client: Mapped[str] = mapped_column(String(64), nullable=False)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    tool: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    symbol: Mapped[str] = mapped_column(String(128), nullable=False)
    resolution: Mapped[str] = mapped_column(String(16), nullable=False)
    timestamp: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content: Mapped[str] = mapped_column(LongText, nullable=False)
    template_name: Mapped[str | None] = mapped_column(String(128), nullable=True)


charts_table: Final[Table] = ChartModel.__table__  # type: ignore[assignment]
series_table: Final[Table] = SeriesModel.__table__  # type: ignore[assignment]
points_table: Final[Table] = PointModel.__table__  # type: ignore[assignment]
api_keys_table: Final[Table] = ApiKeyModel.__table__  # type: ignore[assignment]
annotations_table: Final[Table] = AnnotationModel.__table__  # type: ignore[assignment]
annotation_heads_table: Final[Table] = AnnotationHeadModel.__table__  # type: ignore[assignment]
saved_layouts_table: Final[Table] = SavedLayoutModel.__table__  # type: ignore[assignment]


# MySQL/MariaDB error numbers meaning "no usable server right now": every client-side error
# (2000-2999: cannot connect, server gone away, lost connection), too many connections, shutdown
# in progress, query interrupted (by a shutdown), connection killed, lock wait timeout, deadlock,
# disconnected for inactivity.
_MYSQL_UNAVAILABLE: Final = frozenset({1040, 1053, 1205, 1213, 1317, 1927, 4031})
_ASYNCPG_UNAVAILABLE: Final = (
    # 08xxx: cannot connect, connection lost or gone
    asyncpg.PostgresConnectionError,
    # 57xxx: terminated by a shutdown or an administrator, "the database system is starting up"
    # or "shutting down" (CannotConnectNowError)
    asyncpg.exceptions.OperatorInterventionError,
    # 53300: too many connections
    asyncpg.exceptions.TooManyConnectionsError,
    # the connection closed, or used while closing
    asyncpg.InterfaceError,
    # the protocol in a state it cannot go on from (a command that lost its connection half-way)
    asyncpg.exceptions.InternalClientError,
)
# Mistakes in what was sent, not trouble with the connection.
_ASYNCPG_MISUSE: Final = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
)
_MYSQL_ERRORS: Final = (pymysql.err.MySQLError, asyncmy.errors.MySQLError)
# The drivers' own "not connected": a connection closed under them (aiomysql, asyncmy).
_MYSQL_CLOSED: Final = (pymysql.err.InterfaceError, asyncmy.errors.InterfaceError)


def _driver_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    if isinstance(exc, _ASYNCPG_UNAVAILABLE):
        return not isinstance(exc, _ASYNCPG_MISUSE)
    if isinstance(exc, sqlite3.OperationalError):  # locked, I/O error, cannot open
        return True
    if isinstance(exc, _MYSQL_CLOSED):
        return True
    if isinstance(exc, _MYSQL_ERRORS):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        return 2000 <= code < 3000 or code in _MYSQL_UNAVAILABLE
    return False


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached or dropped the connection (as
    opposed to refusing a statement). Looks through SQLAlchemy's wrapper, the driver adapters'
    causes and :class:`DatabaseUnavailable` itself."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _driver_unavailable(current):
            return True
        current = getattr(current, "orig", None) or current.__cause__
    return False


def as_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The :class:`DatabaseUnavailable` that ``exc`` means, or None when it means something
    else. This is the one translation of driver errors: the database layer raises its result,
    and the HTTP and WebSocket edges apply it to whatever escaped another way, so that a
    database going away is answered as retryable (503) and never as a server error."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    return unavailable(exc) if is_unavailable(exc) else None


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return DatabaseUnavailable(
        "The database is unavailable, so nothing was changed "
        f"({type(exc).__name__}: {reason[0][:200] if reason else 'no detail'}). "
        "Retry in a moment; the service reconnects by itself."
    )


async def _discard_if_broken(conn: AsyncConnection, exc: BaseException) -> None:
    """Drop a connection whose command failed half-way instead of returning it to the pool: after
    a lost connection, or a cancellation mid-command, its protocol state is unknown and the next
    checkout would fail on it (asyncpg: "another operation is in progress"). SQLAlchemy notices
    only the errors it raised itself, not those of driver calls made on ``driver_connection``.
    SQLite's connections are files (or, in memory, the database itself): they are kept."""
    if conn.invalidated or conn.dialect.name == "sqlite":
        return
    if isinstance(exc, asyncio.CancelledError) or is_unavailable(exc):
        with contextlib.suppress(Exception):
            await conn.invalidate()


class Database:
    """The engine and its connections; one per app, built in the lifespan.

    Example::

        database = Database.from_settings(settings)
        await database.create_tables()
        async with database.transaction(write=True) as conn:
            await conn.execute(...)
        await database.close()
    """

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.dialect: str = "mysql" if engine.dialect.name == "mariadb" else engine.dialect.name
        self._writer = engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        self._reader = reader or engine.execution_options(sqlite_begin=None)
        self._own_reader = reader is not None
        # Reads that must agree with each other: one snapshot of the database for the whole
        # transaction. SQLite's deferred BEGIN gives one (WAL) from its first read.
        self._snapshot = (
            engine
            if engine.dialect.name == "sqlite"
            else engine.execution_options(isolation_level="REPEATABLE READ")
        )
        # A server's connections can all die at once (a restart); SQLite's cannot.
        self._pooled = self.dialect != "sqlite"
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        url = make_url(settings.database_url)
        options: dict[str, Any] = {"echo": settings.database_echo}
        connect_args: dict[str, Any] = {}
        timeout = settings.database_connect_timeout_seconds
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                options["poolclass"] = StaticPool
            connect_args["timeout"] = timeout
        else:
            options.update(
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_max_overflow,
                pool_pre_ping=settings.database_pool_pre_ping,
                pool_recycle=settings.database_pool_recycle_seconds,
                pool_timeout=settings.database_pool_timeout_seconds,
            )
            if url.get_driver_name() == "asyncpg":
                connect_args["timeout"] = timeout
            else:
                connect_args["connect_timeout"] = max(1, round(timeout))
                if "charset" not in url.query:
                    connect_args["charset"] = "utf8mb4"
                # history chunks are joined with GROUP_CONCAT, cut at 1 KB by default on MySQL
                connect_args["init_command"] = "SET SESSION group_concat_max_len = 1073741824"
        engine = create_async_engine(url, connect_args=connect_args, **options)
        if url.get_backend_name() == "sqlite":
            _configure_sqlite(engine)
            return cls(engine)
        # Single-statement reads (history chunks) need no transaction and no ping before each
        # checkout: in autocommit mode they cost one round trip, and a connection found dead is
        # replaced and the read retried once (see ``read``).
        reader_options = {**options, "pool_pre_ping": False}
        reader = create_async_engine(
            url, connect_args=connect_args, isolation_level="AUTOCOMMIT", **reader_options
        )
        return cls(engine, reader)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def transaction(
        self, *, write: bool = False, snapshot: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction, committed when the block exits normally.

        ``write=True`` takes SQLite's write lock up front (``BEGIN IMMEDIATE``), so two writers
        never deadlock upgrading their locks. ``snapshot=True`` (reads) sees the database as of
        one moment throughout (``REPEATABLE READ``), where by default each statement sees the
        commits made before it. Losing the database, here or in the block, raises
        ``DatabaseUnavailable``, and the connection is not pooled again.
        """
        engine = self._writer if write else self._snapshot if snapshot else self.engine
        try:
            async with engine.connect() as conn:
                try:
                    async with conn.begin():
                        yield conn
                except BaseException as exc:
                    await _discard_if_broken(conn, exc)
                    raise
        except Exception as exc:
            if isinstance(exc, DatabaseUnavailable) or not is_unavailable(exc):
                raise
            raise unavailable(exc) from exc

    async def read(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` (one read statement, or several that need not agree) outside a
        transaction. A connection that turns out dead is dropped with every idle one (the server
        restarted) and ``work`` retried once on a new one; losing the database raises
        ``DatabaseUnavailable``."""
        for attempt in (1, 2):
            try:
                async with self._reader.connect() as conn:
                    try:
                        return await work(conn)
                    except BaseException as exc:
                        await _discard_if_broken(conn, exc)
                        raise
            except Exception as exc:
                if isinstance(exc, DatabaseUnavailable) or not is_unavailable(exc):
                    raise
                if attempt == 1 and self._pooled and not isinstance(exc, sa_exc.TimeoutError):
                    # The server went away (a restart): the other idle connections are dead too.
                    await self._reader.dispose()
                    continue
                raise unavailable(exc) from exc
        raise AssertionError("unreachable")

    async def ping(self) -> dict[str, Any]:
        """One round trip (``SELECT 1``); raises ``DatabaseUnavailable`` when there is none."""

        async def select_one(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT 1"))

        await self.read(select_one)
        return {"dialect": self.dialect}

    async def has_tables(self) -> bool:
        """Whether the service's tables are there (``charts`` is the first of them)."""
        async with self.transaction() as conn:
            return bool(await conn.run_sync(lambda sync: inspect(sync).has_table("charts")))

    async def create_tables(self) -> bool:
        """Create the tables when ``charts`` is missing and stamp the Alembic revision.

        Returns whether they were created. Several workers may start at once: a worker that
        loses the race to create them finds them there. Tables of an older revision (one of
        ``UPGRADABLE_REVISIONS``) get the tables and columns added since, and the new stamp.
        """
        async with self.transaction(write=True) as conn:
            present = await conn.run_sync(lambda sync: inspect(sync).has_table("charts"))
        if present:
            await self._add_missing_tables()
            return False
        try:
            async with self.transaction(write=True) as conn:
                await conn.run_sync(Base.metadata.create_all)
                await conn.run_sync(_stamp_revision)
        except sa_exc.DatabaseError:
            async with self.transaction() as conn:
                if not await conn.run_sync(lambda sync: inspect(sync).has_table("charts")):
                    raise
            return False
        logger.info("created the database tables at revision %s", SCHEMA_REVISION)
        return True

    async def _add_missing_tables(self) -> None:
        def missing(sync: Any) -> tuple[list[Table], bool]:
            inspector = inspect(sync)
            absent = [t for t in Base.metadata.sorted_tables if not inspector.has_table(t.name)]
            return absent, inspector.has_table("alembic_version")

        async with self.transaction(write=True) as conn:
            absent, stamped = await conn.run_sync(missing)
        if absent:
            names = ", ".join(table.name for table in absent)
            try:
                async with self.transaction(write=True) as conn:
                    await conn.run_sync(
                        lambda sync: Base.metadata.create_all(sync, tables=absent, checkfirst=True)
                    )
            except sa_exc.DatabaseError as exc:
                async with self.transaction() as conn:
                    if (await conn.run_sync(missing))[0]:
                        raise RuntimeError(
                            f"The database lacks the tables {names} and the service could not "
                            f"add them ({type(exc).__name__}); run `alembic upgrade head`."
                        ) from exc
            else:
                logger.info("added the tables %s", names)
        await self._add_template_names()
        await self._add_series_columns()
        if stamped:
            async with self.transaction(write=True) as conn:
                await conn.execute(
                    text(
                        "UPDATE alembic_version SET version_num = :head WHERE version_num IN :old"
                    ).bindparams(bindparam("old", expanding=True)),
                    {"head": SCHEMA_REVISION, "old": list(UPGRADABLE_REVISIONS)},
                )

    async def _add_template_names(self) -> None:
        """Revision 0005 on a database an older version created: ``saved_layouts`` gets its
        unique ``template_name`` (see ``add_template_names``)."""

        def unnamed(sync: Any) -> bool:
            columns = inspect(sync).get_columns("saved_layouts")
            return all(column["name"] != "template_name" for column in columns)

        async with self.transaction() as conn:
            if not await conn.run_sync(unnamed):
                return
        try:
            async with self.transaction(write=True) as conn:
                await conn.run_sync(add_template_names)
        except sa_exc.DatabaseError as exc:
            async with self.transaction() as conn:
                if await conn.run_sync(unnamed):
                    raise RuntimeError(
                        "The database's saved_layouts table lacks template_name and the service "
                        f"could not add it ({type(exc).__name__}); run `alembic upgrade head`."
                    ) from exc
            return  # another worker did it meanwhile
        logger.info("saved templates have unique names now (revision %s)", SCHEMA_REVISION)

    async def _add_series_columns(self) -> None:
        """Revision 0006 on a database an older version created: the series' ``market`` and
        ``aggregation`` columns."""

        def missing(sync: Any) -> list[str]:
            present = {column["name"] for column in inspect(sync).get_columns("series")}
            return [name for name in _SERIES_COLUMNS_SINCE if name not in present]

        async with self.transaction() as conn:
            columns = await conn.run_sync(missing)
        if not columns:
            return
        try:
            async with self.transaction(write=True) as conn:
                for name in columns:
                    kind = series_table.c[name].type.compile(dialect=conn.dialect)
                    await conn.execute(text(f"ALTER TABLE series ADD COLUMN {name} {kind}"))
        except sa_exc.DatabaseError as exc:
            async with self.transaction() as conn:
                if await conn.run_sync(missing):
                    raise RuntimeError(
                        "The database's series table lacks the columns "
                        f"{', '.join(columns)} and the service could not add them "
                        f"({type(exc).__name__}); run `alembic upgrade head`."
                    ) from exc
            return  # another worker did it meanwhile
        logger.info("added the series columns %s", ", ".join(columns))

    async def close(self) -> None:
        await self.engine.dispose()
        if self._own_reader:
            await self._reader.dispose()


def add_template_names(sync_conn: Any) -> None:
    """Give ``saved_layouts`` its ``template_name`` column and unique index (revision 0005):
    of templates saved twice under one name (two saves that raced), the newest is kept."""
    sync_conn.execute(text("ALTER TABLE saved_layouts ADD COLUMN template_name VARCHAR(128)"))
    # MySQL cannot read the table a DELETE changes but through a derived table.
    sync_conn.execute(
        text(
            "DELETE FROM saved_layouts WHERE kind <> 'chart' AND id NOT IN ("
            "SELECT id FROM (SELECT MAX(id) AS id FROM saved_layouts WHERE kind <> 'chart' "
            "GROUP BY client, user_id, kind, tool, name) AS newest)"
        )
    )
    sync_conn.execute(text("UPDATE saved_layouts SET template_name = name WHERE kind <> 'chart'"))
    sync_conn.execute(
        text(
            f"CREATE UNIQUE INDEX {TEMPLATE_NAME_INDEX} ON saved_layouts "
            "(client, user_id, kind, tool, template_name)"
        )
    )


def _stamp_revision(sync_conn: Any) -> None:
    version = Table(
        "alembic_version", MetaData(), Column("version_num", String(32), primary_key=True)
    )
    version.create(sync_conn, checkfirst=True)
    if sync_conn.execute(version.select()).first() is None:
        sync_conn.execute(version.insert().values(version_num=SCHEMA_REVISION))


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL (readers never wait for the writer), foreign keys, a busy timeout, and BEGIN issued by
    us rather than guessed by the sqlite3 module, so every transaction is a real one."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            # With WAL, NORMAL survives a crash of the process (a 2xx is on disk in the WAL);
            # only an operating system crash can lose the last commits. SQLite is the
            # development store; PostgreSQL and MariaDB are for durability.
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=10000",
            "temp_store=MEMORY",
            "cache_size=-65536",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        begin = conn.get_execution_options().get("sqlite_begin", "BEGIN")
        if begin:  # None: reads, each statement atomic on its own
            conn.exec_driver_sql(begin)
