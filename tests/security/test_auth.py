"""Tokens and principals without a server."""

from __future__ import annotations

import asyncio
import time
import warnings
from datetime import timedelta

import jwt
import pytest

from lightweight_charts_pro_backend.apikeys import SettingsKeyStore, new_api_key
from lightweight_charts_pro_backend.auth import (
    ALL_SCOPES,
    READ,
    WRITE,
    Authenticator,
    Credentials,
    create_access_token,
    decode_access_token,
)
from lightweight_charts_pro_backend.errors import Forbidden, InvalidToken, TokenExpired

from .conftest import make_settings


def test_guide_call_makes_a_token_for_its_charts_with_both_scopes() -> None:
    settings = make_settings(access_token_expire_minutes=30)
    token = create_access_token({"sub": "user123", "chart_ids": ["chart1", "chart2"]}, settings)
    principal = decode_access_token(token, settings)
    assert principal.sub == "user123"
    assert principal.chart_ids == frozenset({"chart1", "chart2"})
    assert principal.scopes == ALL_SCOPES
    assert principal.expires_at is not None
    assert 29 * 60 < principal.expires_at - time.time() <= 30 * 60 + 1
    claims = jwt.decode(token, settings.secret_key, algorithms=["HS256"])
    assert claims["iat"] <= time.time() and "scope" not in claims


def test_expires_delta_and_scope() -> None:
    settings = make_settings()
    token = create_access_token(
        {"sub": "svc", "scope": ["charts:write"]}, settings, timedelta(seconds=90)
    )
    principal = decode_access_token(token, settings)
    assert principal.scopes == frozenset({WRITE})
    assert principal.chart_ids is None
    assert 85 < (principal.seconds_left() or 0) <= 91


@pytest.mark.parametrize(
    "data",
    [{}, {"sub": ""}, {"sub": 5}, {"sub": "x", "chart_ids": "a"}, {"sub": "x", "scope": "admin"}],
)
def test_create_refuses_tokens_that_could_never_be_used(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        create_access_token(data, make_settings())


def test_other_algorithm_setting_is_honoured() -> None:
    settings = make_settings(algorithm="HS512")
    token = create_access_token({"sub": "x"}, settings)
    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    assert decode_access_token(token, settings).sub == "x"
    with pytest.raises(InvalidToken, match="HS256"):
        decode_access_token(token, make_settings(algorithm="HS256"))


def test_short_development_key_does_not_warn_per_call() -> None:
    settings = make_settings(secret_key="short")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = create_access_token({"sub": "x"}, settings)
        assert decode_access_token(token, settings).sub == "x"


async def test_cached_token_still_expires() -> None:
    settings = make_settings()
    authenticator = Authenticator(settings, SettingsKeyStore([]))
    token = create_access_token({"sub": "x"}, settings, timedelta(seconds=1))
    assert (await authenticator.authenticate(Credentials(token=token))) is not None
    principal = authenticator.token_principal(token)
    assert principal.expires_at is not None
    await asyncio.sleep(max(0.0, principal.expires_at - time.time()) + 0.05)
    with pytest.raises(TokenExpired):
        authenticator.token_principal(token)


def test_principal_checks() -> None:
    secret, record = new_api_key("k", ["a"], [READ])
    from lightweight_charts_pro_backend.auth import api_key_principal

    principal = api_key_principal(record)
    principal.check("a", READ)
    principal.check(None, READ)
    with pytest.raises(Forbidden, match="chart 'b'"):
        principal.check("b", READ)
    with pytest.raises(Forbidden, match="may not write"):
        principal.check("a", WRITE)
    assert principal.seconds_left() is None
    assert secret.startswith("lcp_") and record.key_hash.endswith(record.key_hash[-64:])


async def test_api_keys_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import orjson

    from lightweight_charts_pro_backend.config import Settings

    secret, record = new_api_key("env", ["a"], [READ])
    monkeypatch.setenv("API_KEYS", orjson.dumps([record.to_setting()]).decode())
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    store = SettingsKeyStore(settings.api_keys)
    principal = await Authenticator(settings, store).authenticate(Credentials(api_key=secret))
    assert principal is not None
    assert principal.chart_ids == frozenset({"a"}) and principal.scopes == frozenset({READ})

    tampered = dict(record.to_setting(), id="0" * 12)
    monkeypatch.setenv("API_KEYS", orjson.dumps([tampered]).decode())
    with pytest.raises(ValueError, match="does not match its hash"):
        Settings(_env_file=None)  # type: ignore[call-arg]


async def test_recheck_tells_why_credentials_admitted_once_are_admitted_no_more() -> None:
    from datetime import UTC, datetime

    from lightweight_charts_pro_backend.auth import ANONYMOUS, decode_access_token
    from lightweight_charts_pro_backend.errors import ApiKeyRevoked, DatabaseUnavailable

    settings = make_settings()
    key, record = new_api_key("k")
    store = SettingsKeyStore([])
    await store.add(record)
    authenticator = Authenticator(settings, store)
    by_key = await authenticator.authenticate(Credentials(api_key=key))
    issued = decode_access_token(
        create_access_token({"sub": "x", "key_id": record.id}, settings), settings
    )
    plain = decode_access_token(create_access_token({"sub": "y"}, settings), settings)
    assert by_key is not None
    for principal in (by_key, issued, plain, ANONYMOUS):
        assert await authenticator.recheck(principal) is None

    await store.revoke(record.id, datetime.now(UTC))
    refusals = [await authenticator.recheck(p) for p in (by_key, issued, plain, ANONYMOUS)]
    assert [type(r) for r in refusals] == [ApiKeyRevoked, ApiKeyRevoked, type(None), type(None)]
    assert [r.detail for r in refusals if r is not None] == [
        "The API key has been revoked.",
        "The API key this token was issued for has been revoked.",
    ]

    expired = decode_access_token(
        create_access_token({"sub": "z"}, settings, timedelta(seconds=1)), settings
    )
    await asyncio.sleep(max(0.0, (expired.expires_at or 0) - time.time()) + 0.05)
    assert isinstance(await authenticator.recheck(expired), TokenExpired)

    class Away(SettingsKeyStore):
        async def find_by_id(self, key_id: str) -> None:
            raise DatabaseUnavailable("The database is unavailable.")

    # While the key store cannot be asked, a socket keeps the credentials it was opened with.
    assert await Authenticator(settings, Away([])).recheck(by_key) is None
