"""Production guards: unsafe settings stop the factories; docs hidden; warnings logged."""

from __future__ import annotations

import logging

import pytest

from lightweight_charts_pro_backend import app, app_production
from lightweight_charts_pro_backend.config import DEFAULT_SECRET_KEY
from lightweight_charts_pro_backend.guards import UnsafeConfiguration

from .conftest import ClientFactory, make_settings

GOOD_KEY = "k" * 64


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"secret_key": DEFAULT_SECRET_KEY}, "SECRET_KEY is the default"),
        ({"secret_key": "s" * 31}, "SECRET_KEY is 31 bytes; HS256 needs at least 32"),
        ({"secret_key": "s" * 40, "algorithm": "HS512"}, "HS512 needs at least 64"),
        ({"cors_origins": "https://app.example,*"}, "CORS_ORIGINS contains '*'"),
    ],
)
@pytest.mark.parametrize("factory", [app.create_app, app_production.create_app])
def test_production_refuses_unsafe_settings(
    overrides: dict[str, object], message: str, factory: object
) -> None:
    values: dict[str, object] = {"environment": "production", "secret_key": GOOD_KEY}
    values.update(overrides)
    settings = make_settings(**values)
    with pytest.raises(UnsafeConfiguration, match="Refusing to start") as refused:
        factory(settings)  # type: ignore[operator]
    assert message in str(refused.value)


def test_unsafe_settings_are_fine_outside_production() -> None:
    settings = make_settings(secret_key=DEFAULT_SECRET_KEY, cors_origins="*")
    assert app_production.create_app(settings) is not None


@pytest.mark.parametrize(
    ("environment", "production_docs", "served"),
    [("production", False, False), ("production", True, True), ("development", False, True)],
)
async def test_docs_in_production_only_when_asked(
    environment: str, production_docs: bool, served: bool, app_client: ClientFactory
) -> None:
    settings = make_settings(
        environment=environment, secret_key=GOOD_KEY, production_docs=production_docs
    )
    async with app_client(settings, production=True) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            status = (await client.get(path)).status_code
            assert (status == 200) is served, path


async def test_production_warnings_at_startup(
    app_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        environment="production",
        secret_key=GOOD_KEY,
        enable_auth=False,
        enable_persistence=True,
        debug=True,
    )
    with caplog.at_level(logging.WARNING, logger="lightweight_charts_pro_backend.guards"):
        async with app_client(settings, production=True):
            pass
    text = "\n".join(r.message for r in caplog.records)
    assert "ENABLE_AUTH is false" in text
    assert "DATABASE_URL is SQLite" in text
    assert "DEBUG is true" in text
    caplog.clear()
    quiet = make_settings(environment="production", secret_key=GOOD_KEY)
    with caplog.at_level(logging.WARNING, logger="lightweight_charts_pro_backend.guards"):
        async with app_client(quiet, production=True):
            pass
    assert [r.message for r in caplog.records] == [
        "ENABLE_PERSISTENCE is false: charts live in memory and die with it."
    ]


async def test_cors_preflight_and_exposed_headers(app_client: ClientFactory) -> None:
    settings = make_settings(enable_auth=False, cors_origins="https://app.example")
    async with app_client(settings, production=True) as client:
        preflight = await client.options(
            "/api/charts",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        other = await client.options(
            "/api/charts",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert other.status_code == 400
        simple = await client.get("/api/charts", headers={"Origin": "https://app.example"})
        exposed = simple.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed and "x-ratelimit-remaining" in exposed
