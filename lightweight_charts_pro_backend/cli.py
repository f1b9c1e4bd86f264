"""The ``charts-backend`` command.

Examples::

    charts-backend serve --port 8000
    charts-backend demo --serve                 # dev server with a 1,000,000-candle live chart
    charts-backend load prices.csv --chart btc --series price --type candlestick
    charts-backend db upgrade
    charts-backend token create --sub user123 --charts chart1,chart2 --scope charts:read
    charts-backend apikey create --name ingest --charts chart1 --scope charts:write
    charts-backend apikey list
    charts-backend apikey revoke 3f2a9c1b7d4e

Settings (``SECRET_KEY``, ``API_KEYS``, ...) come from the environment and ``.env``, as for the
server. ``demo`` and ``load`` talk to a running server over HTTP (``--url``) and need the
``client`` extra. While persistence is off, keys live in the ``API_KEYS`` setting:
``apikey create`` and ``apikey revoke`` print the new setting line to put in ``.env`` (then
restart the server). With ``ENABLE_PERSISTENCE=true`` they live in the database's ``api_keys``
table, which running servers read (through a cache of a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from . import loader
from .apikeys import (
    KEY_CACHE_SECONDS,
    NoKeyTable,
    SettingsKeyStore,
    new_api_key,
    open_keystore,
)
from .auth import ALL_SCOPES, create_access_token, parse_chart_ids, parse_scope
from .config import Settings, get_settings

_KEY_NAME = re.compile(r"[A-Za-z0-9 _.@:-]{1,100}")


class CommandError(Exception):
    """A mistake in the command line or its settings, reported in one sentence."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        args.run(args, get_settings())
    except (CommandError, NoKeyTable, ValidationError, ValueError) as exc:
        print(f"charts-backend: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="charts-backend", description="Lightweight Charts Pro Backend administration."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    token = commands.add_parser("token", help="JWT access tokens").add_subparsers(
        title="token commands", metavar="ACTION", required=True
    )
    create = token.add_parser("create", help="print a signed access token")
    create.add_argument("--sub", required=True, help="subject (user or service name)")
    _chart_and_scope_options(create)
    create.add_argument(
        "--minutes", type=int, help="lifetime (default: ACCESS_TOKEN_EXPIRE_MINUTES)"
    )
    create.set_defaults(run=_token_create)

    apikey = commands.add_parser("apikey", help="API keys").add_subparsers(
        title="apikey commands", metavar="ACTION", required=True
    )
    create = apikey.add_parser("create", help="make a key; it is shown once")
    create.add_argument("--name", required=True, help="what the key is for")
    _chart_and_scope_options(create)
    create.set_defaults(run=_apikey_create)
    listing = apikey.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(run=_apikey_list)
    revoke = apikey.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", help="the key id shown by `apikey list`")
    revoke.set_defaults(run=_apikey_revoke)

    serve = commands.add_parser("serve", help="run the server (settings from the environment)")
    serve.add_argument("--host", help="address to bind (default: HOST)")
    serve.add_argument("--port", type=int, help="port (default: PORT)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.add_argument(
        "--development",
        action="store_true",
        help="serve the development app instead of the production app",
    )
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo", help="seed a chart with synthetic candles and keep its last bar moving"
    )
    _server_options(demo)
    demo.add_argument("--chart", default="demo", help="chart id (default: demo)")
    demo.add_argument(
        "--candles", type=int, default=1_000_000, help="candles to seed (default: 1000000)"
    )
    demo.add_argument(
        "--bar-seconds", type=int, default=10, help="seconds per candle (default: 10)"
    )
    demo.add_argument(
        "--rate", type=float, default=4.0, help="last-bar updates per second (default: 4)"
    )
    demo.add_argument("--duration", type=float, help="stop after this many seconds of updates")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="start a development server on --host/--port first (stopped on exit)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="with --serve (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="with --serve (default: 8000)")
    demo.set_defaults(run=_demo)

    load = commands.add_parser("load", help="load a CSV or Parquet file into a series")
    load.add_argument("file", help="a .csv or .parquet file with a time column")
    _server_options(load)
    load.add_argument("--chart", required=True, help="chart id (created when missing)")
    load.add_argument("--series", help="series id (default: the file name without extension)")
    load.add_argument(
        "--type",
        default="auto",
        choices=["auto", *sorted(loader.VALUE_COLUMNS)],
        help="series type (default: candlestick with open/high/low/close columns, else line)",
    )
    load.add_argument("--pane", type=int, default=0, help="pane id (default: 0)")
    load.add_argument(
        "--batch-size", type=int, default=50_000, help="points per request (default: 50000)"
    )
    load.set_defaults(run=_load)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        title="db commands", metavar="ACTION", required=True
    )
    upgrade = db.add_parser("upgrade", help="migrate DATABASE_URL to the latest schema")
    upgrade.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    upgrade.set_defaults(run=_db_upgrade)
    return parser


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the server's base URL (default: http://127.0.0.1:PORT)")
    parser.add_argument("--token", help="a JWT, when the server runs with ENABLE_AUTH")
    parser.add_argument("--api-key", help="an API key, when the server runs with ENABLE_AUTH")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _chart_and_scope_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--charts", help="comma-separated chart ids (default: every chart)")
    parser.add_argument(
        "--scope",
        action="append",
        help="charts:read or charts:write; repeat or space-separate for both (default: both)",
    )


def _charts(value: str | None) -> list[str] | None:
    if value is None:
        return None
    ids = [item.strip() for item in value.split(",") if item.strip()]
    try:
        parse_chart_ids(ids)
    except ValueError:
        raise CommandError(
            f"--charts {value!r}: chart ids are 1-128 letters, digits, '_', '-' or '.'."
        ) from None
    return ids


def _scopes(values: list[str] | None) -> frozenset[str]:
    if not values:
        return ALL_SCOPES
    try:
        return parse_scope(" ".join(values))
    except ValueError as exc:
        raise CommandError(f"--scope: {exc}.") from None


def _token_create(args: argparse.Namespace, settings: Settings) -> None:
    if args.minutes is not None and args.minutes < 1:
        raise CommandError("--minutes must be at least 1.")
    claims: dict[str, object] = {"sub": args.sub}
    charts = _charts(args.charts)
    if charts is not None:
        claims["chart_ids"] = charts
    if args.scope:
        claims["scope"] = " ".join(sorted(_scopes(args.scope)))
    delta = timedelta(minutes=args.minutes) if args.minutes else None
    print(create_access_token(claims, settings, delta))


# How long a server may keep answering from its cache of keys (persistence on).
_KEY_CACHE: Final = f"{KEY_CACHE_SECONDS:g} s"


def _apikey_create(args: argparse.Namespace, settings: Settings) -> None:
    if not _KEY_NAME.fullmatch(args.name):
        raise CommandError("--name: use 1-100 letters, digits, spaces or _ . @ : -.")
    secret, record = new_api_key(args.name, _charts(args.charts), _scopes(args.scope))

    async def store() -> SettingsKeyStore | None:
        async with open_keystore(settings) as keystore:
            await keystore.add(record)
            return keystore if isinstance(keystore, SettingsKeyStore) else None

    in_settings = asyncio.run(store())
    print(f"API key {record.id} ({record.name}), shown only now; store it safely:")
    print(secret)
    if in_settings is not None:
        print("\nThe server reads keys from the API_KEYS setting. Put this line in .env")
        print("(it keeps the keys already there) and restart the server:\n")
        print(in_settings.setting_line())
    else:
        print(f"\nStored in the database; running servers accept it within {_KEY_CACHE}.")


def _apikey_list(args: argparse.Namespace, settings: Settings) -> None:
    async def fetch() -> list[list[str]]:
        async with open_keystore(settings) as keystore:
            return [
                [
                    record.id,
                    record.name,
                    ",".join(sorted(record.chart_ids)) if record.chart_ids is not None else "*",
                    record.scope,
                    _when(record.created_at),
                    _when(record.revoked_at) if record.revoked_at else "",
                ]
                for record in await keystore.all()
            ]

    rows = asyncio.run(fetch())
    if not rows:
        print("No API keys.")
        return
    table = [["ID", "NAME", "CHARTS", "SCOPE", "CREATED", "REVOKED"], *rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _apikey_revoke(args: argparse.Namespace, settings: Settings) -> None:
    async def revoke() -> SettingsKeyStore | None:
        async with open_keystore(settings) as keystore:
            try:
                await keystore.revoke(args.id, datetime.now(UTC).replace(microsecond=0))
            except LookupError as exc:
                raise CommandError(str(exc)) from None
            return keystore if isinstance(keystore, SettingsKeyStore) else None

    in_settings = asyncio.run(revoke())
    print(f"API key {args.id} revoked.")
    if in_settings is not None:
        print("\nThe server reads keys from API_KEYS: put this line in .env and restart it:\n")
        print(in_settings.setting_line())
    else:
        print(f"Running servers refuse it within {_KEY_CACHE}.")


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    module = "app" if args.development else "app_production"
    if args.workers < 1:
        raise CommandError("--workers must be at least 1.")
    uvicorn.run(
        f"lightweight_charts_pro_backend.{module}:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        # TRUSTED_PROXIES alone decides whose X-Forwarded-For is believed (uvicorn's default
        # believes loopback).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies,
    )


def _demo(args: argparse.Namespace, settings: Settings) -> None:
    from .demo import runner

    if args.candles < 1 or args.bar_seconds < 1 or args.rate <= 0:
        raise CommandError("--candles and --bar-seconds must be at least 1, --rate above 0.")
    with contextlib.ExitStack() as stack:
        url = args.url or f"http://127.0.0.1:{settings.port}"
        if args.serve:
            url = stack.enter_context(runner.dev_server(args.host, args.port))
        try:
            runner.run_demo(
                url,
                args.chart,
                candles=args.candles,
                bar_seconds=args.bar_seconds,
                rate=args.rate,
                duration=args.duration,
                token=args.token,
                api_key=args.api_key,
                progress=not args.no_progress,
            )
        except runner.DemoError as exc:
            raise CommandError(str(exc)) from None


def _load(args: argparse.Namespace, settings: Settings) -> None:
    try:
        loader.load_file(
            args.file,
            url=args.url or f"http://127.0.0.1:{settings.port}",
            chart_id=args.chart,
            series_id=args.series,
            series_type=args.type,
            pane=args.pane,
            batch_size=args.batch_size,
            token=args.token,
            api_key=args.api_key,
            progress=not args.no_progress,
        )
    except loader.LoadError as exc:
        raise CommandError(str(exc)) from None


def migrations_directory() -> Path:
    """Alembic's scripts: inside the package when installed from a wheel, else the checkout's."""
    packaged = Path(__file__).resolve().parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "migrations"


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.engine import make_url

    # Built in code rather than read from alembic.ini, which an installed package does not have.
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.attributes["configure_logger"] = False
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    try:
        command.upgrade(config, args.revision)
    except Exception as exc:
        raise CommandError(f"could not upgrade {where}: {exc}") from None
    print(f"Database {where} is at revision {args.revision}.")


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


if __name__ == "__main__":
    sys.exit(main())
