from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from lightweight_charts_pro_backend.config import Settings


def test_defaults_match_the_deployment_guide() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.app_name == "Lightweight Charts Pro Backend"
    assert (s.environment, s.debug, s.log_level) == ("development", False, "INFO")
    assert (s.host, s.port) == ("0.0.0.0", 8000)
    assert s.secret_key == "dev-secret-key-change-in-production"
    assert (s.algorithm, s.access_token_expire_minutes) == ("HS256", 30)
    assert (s.enable_auth, s.api_key_header) == (False, "X-API-Key")
    assert s.cors_origins == ["http://localhost:3000", "http://localhost:8501"]
    assert (s.enable_rate_limiting, s.rate_limit_per_minute) == (True, 60)
    assert s.rate_limit_history_per_minute == 30
    assert s.database_url == "sqlite+aiosqlite:///./charts.db"
    assert (s.database_echo, s.enable_persistence) == (False, False)
    assert (s.chart_ttl_hours, s.cleanup_interval_minutes) == (24, 60)
    assert (s.websocket_timeout_seconds, s.websocket_ping_interval_seconds) == (300, 30)
    assert (s.enable_metrics, s.metrics_path) == (True, "/metrics")


def test_environment_variables_are_read_and_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("ENVIRONMENT", "Production")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "300")
    monkeypatch.setenv("ENABLE_AUTH", "true")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.environment == "production" and s.is_production
    assert s.log_level == "DEBUG"
    assert s.rate_limit_per_minute == 300
    assert s.enable_auth is True


def test_dotenv_file_is_read(tmp_path: pytest.TempPathFactory) -> None:
    env = tmp_path / ".env"  # type: ignore[operator]
    env.write_text("PORT=9001\nENABLE_METRICS=false\n")
    s = Settings(_env_file=env)  # type: ignore[call-arg]
    assert (s.port, s.enable_metrics) == (9001, False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "0"),
        ("PORT", "70000"),
        ("ENVIRONMENT", "prod"),
        ("LOG_LEVEL", "LOUD"),
        ("ALGORITHM", "none"),
        ("RATE_LIMIT_PER_MINUTE", "0"),
        ("WEBSOCKET_TIMEOUT_SECONDS", "-1"),
        ("CHART_TTL_HOURS", "-2"),
        ("API_KEY_HEADER", "X API Key"),
        ("DEFAULT_CHUNK_SIZE", "20000"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_every_setting_is_in_env_example_and_the_deployment_guide() -> None:
    root = Path(__file__).resolve().parent.parent
    example = (root / ".env.example").read_text()
    example_names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    guide = (root / "docs" / "deployment.md").read_text()
    names = {name.upper() for name in Settings.model_fields}
    assert names - example_names == set(), ".env.example misses these settings"
    assert {n for n in names if f"`{n}`" not in guide} == set(), "the guide misses these"
    assert example_names - names == set(), ".env.example names settings that do not exist"
