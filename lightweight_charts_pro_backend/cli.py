"""The ``charts-backend`` command.

Examples::

    charts-backend token create --sub user123 --charts chart1,chart2 --scope charts:read
    charts-backend apikey create --name ingest --charts chart1 --scope charts:write
    charts-backend apikey list
    charts-backend apikey revoke 3f2a9c1b7d4e

Settings (``SECRET_KEY``, ``API_KEYS``, ...) come from the environment and ``.env``, as for the
server. While persistence is off, keys live in the ``API_KEYS`` setting: ``apikey create`` and
``apikey revoke`` print the new setting line to put in ``.env`` (then restart the server).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from .apikeys import SettingsKeyStore, new_api_key, open_keystore
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
    except (CommandError, ValidationError, ValueError) as exc:
        print(f"charts-backend: {exc}", file=sys.stderr)
        return 1
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
    return parser


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


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


if __name__ == "__main__":
    sys.exit(main())
