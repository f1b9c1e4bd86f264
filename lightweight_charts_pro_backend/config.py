"""Settings read from the environment and `.env`, validated once per process."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SECRET_KEY = "dev-secret-key-change-in-production"

DATABASE_DRIVERS = frozenset(
    {
        "sqlite+aiosqlite",
        "postgresql+asyncpg",
        "mysql+aiomysql",
        "mysql+asyncmy",
        "mariadb+aiomysql",
        "mariadb+asyncmy",
    }
)

Environment = Literal["development", "staging", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "text"]


class ApiKeySetting(BaseModel):
    """One API key given in the ``API_KEYS`` setting (the key store while persistence is off;
    added to the database's ``api_keys`` table when it is on).

    Only the SHA-256 of the key is kept; ``charts`` absent or null means every chart.
    ``charts-backend apikey create`` prints a ready entry.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    name: str = Field(min_length=1, max_length=200)
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    charts: tuple[str, ...] | None = None
    scope: str = "charts:read charts:write"
    created_at: datetime | None = Field(default=None, alias="createdAt")
    revoked_at: datetime | None = Field(default=None, alias="revokedAt")

    @model_validator(mode="after")
    def _id_matches_hash(self) -> ApiKeySetting:
        if self.hash.removeprefix("sha256:")[:12] != self.id:
            raise ValueError(f"API key {self.name!r}: id {self.id} does not match its hash")
        return self

    @field_validator("scope")
    @classmethod
    def _known_scopes(cls, value: str) -> str:
        unknown = set(value.split()) - {"charts:read", "charts:write"}
        if unknown or not value.split():
            raise ValueError("scope must be 'charts:read', 'charts:write' or both, space-separated")
        return value


class Settings(BaseSettings):
    """Every tunable of the service; names match the environment variables in upper case.

    Example::

        settings = Settings(enable_auth=True, secret_key="...")  # explicit values win
        settings = get_settings()  # environment and .env, cached
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # Application
    app_name: str = "Lightweight Charts Pro Backend"
    environment: Environment = "development"
    debug: bool = False
    log_level: LogLevel = "INFO"
    # None: JSON when ENVIRONMENT=production, readable text otherwise (see ``resolved_log_format``).
    log_format: LogFormat | None = None

    # Server
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)

    # Security
    secret_key: str = Field(default=DEFAULT_SECRET_KEY, min_length=1)
    algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_expire_minutes: int = Field(default=30, ge=1, le=60 * 24 * 365)
    enable_auth: bool = False
    api_key_header: str = Field(default="X-API-Key", pattern=r"^[A-Za-z0-9-]{1,64}$")
    api_keys: list[ApiKeySetting] = Field(default_factory=list)
    production_docs: bool = False
    enable_demo: bool = False

    # Request limits
    max_request_body_bytes: int = Field(default=128 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=200)
    max_points_per_request: int = Field(default=1_000_000, ge=1)

    # Annotations and saved layouts
    max_annotations_per_chart: int = Field(default=10_000, ge=1, le=1_000_000)
    max_annotation_bytes: int = Field(default=16 * 1024, ge=512, le=16 * 2**20)
    max_layout_bytes: int = Field(default=2 * 2**20, ge=1024, le=64 * 2**20)
    # With persistence: memory for the annotations each process keeps of the charts it lists.
    annotation_cache_mb: float = Field(default=64, ge=0)

    # CORS
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=["http://localhost:3000", "http://localhost:8501"]
    )

    # Rate limiting
    enable_rate_limiting: bool = True
    rate_limit_per_minute: int = Field(default=60, ge=1, le=1_000_000)
    rate_limit_history_per_minute: int = Field(default=30, ge=1, le=1_000_000)
    # X-RateLimit-Limit/-Remaining/-Reset on every limited response, not only on a refusal.
    rate_limit_headers: bool = False
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_url: str | None = Field(default=None, pattern=r"^(redis|rediss|unix)://")
    # How often each process proves the Redis event bus delivers; a read without min_version
    # may be this much (times 2.5, at most) behind another replica's write.
    event_bus_heartbeat_seconds: float = Field(default=1.0, gt=0, le=60)
    # With several workers sharing a database: how long a new worker may spend loading the most
    # recently used series before it takes requests (the others serve meanwhile); 0: none.
    cache_warmup_seconds: float = Field(default=10, ge=0, le=600)

    # Database
    database_url: str = "sqlite+aiosqlite:///./charts.db"
    database_echo: bool = False
    enable_persistence: bool = False
    chart_ttl_hours: float = Field(default=24, ge=0)
    cleanup_interval_minutes: float = Field(default=60, gt=0)
    database_pool_size: int = Field(default=20, ge=1, le=1000)
    database_max_overflow: int = Field(default=40, ge=0, le=1000)
    database_pool_pre_ping: bool = True
    database_pool_recycle_seconds: int = Field(default=3600, ge=-1)
    database_pool_timeout_seconds: float = Field(default=30, gt=0)
    database_connect_timeout_seconds: float = Field(default=5, gt=0)
    series_cache_mb: float = Field(default=256, ge=0)
    #: Numeric columns and bars of series read at other resolutions (timeframes), both modes.
    bar_cache_mb: float = Field(default=256, ge=0)

    # WebSocket
    websocket_timeout_seconds: float = Field(default=300, gt=0)
    websocket_ping_interval_seconds: float = Field(default=30, gt=0)
    websocket_max_message_bytes: int = Field(default=65_536, ge=256, le=16 * 2**20)
    websocket_send_queue_size: int = Field(default=1024, ge=1, le=1_000_000)
    websocket_resume_events: int = Field(default=500, ge=0, le=1_000_000)
    websocket_resume_max_bytes: int = Field(default=16 * 2**20, ge=0)
    websocket_resume_window_seconds: float = Field(default=60, ge=0)

    # Monitoring
    enable_metrics: bool = True
    metrics_path: str = Field(default="/metrics", pattern=r"^/[A-Za-z0-9_/-]*$")
    # Traces go to this OTLP/HTTP collector when set and the OpenTelemetry packages are installed.
    otel_exporter_otlp_endpoint: str | None = None

    # Data delivery
    chunk_size_threshold: int = Field(default=500, ge=1, le=10_000_000)
    default_chunk_size: int = Field(default=500, ge=1, le=10_000)
    #: Where the TradingView UDF datafeed is mounted (the Charting Library's datafeed URL).
    udf_path: str = Field(default="/udf", pattern=r"^(/[A-Za-z0-9_.-]+)+$")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [proxy.strip() for proxy in value.split(",") if proxy.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for proxy in value:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _empty_endpoint(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _lower_environment(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if scheme not in DATABASE_DRIVERS:
            raise ValueError(
                f"DATABASE_URL must start with one of {', '.join(sorted(DATABASE_DRIVERS))}://; "
                f"got {scheme or value!r}"
            )
        return value

    @field_validator("udf_path")
    @classmethod
    def _own_udf_path(cls, value: str) -> str:
        first = value.split("/")[1]
        if first in ("api", "ws", "health", "docs", "redoc", "openapi.json", "demo", "client"):
            raise ValueError(f"UDF_PATH {value!r} would share /{first} with the service's routes")
        return value

    @model_validator(mode="after")
    def _ping_before_timeout(self) -> Settings:
        if self.websocket_ping_interval_seconds >= self.websocket_timeout_seconds:
            raise ValueError(
                "WEBSOCKET_PING_INTERVAL_SECONDS must be smaller than WEBSOCKET_TIMEOUT_SECONDS, "
                "or clients that only answer the server's pings are closed as idle."
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def resolved_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.is_production else "text"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment and `.env` on first call."""
    return Settings()
