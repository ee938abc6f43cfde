"""Settings, read once from the environment (and `.env`).

Every name here is listed in `.env.example`. A bad value stops start-up with a
message naming the setting, rather than failing later on a request.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.nip import NipError, infer_employment

LOCAL_ISSUER = "urn:izin-siaran:local"
LOCAL_AUDIENCE = "izin-siaran"


LONGEST_WINDOW = timedelta(days=7)
"""The longest window a permit may have, whatever the policy says
(docs/RULES.md#longest-window): the most `POLICY_MAX_DURATION_MINUTES` may be, and what
the permits table holds every row to (CHECK `window_length`, app/permits/models.py), so
that the check reads only the permits that end within this of the instant asked about."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    data_dir: Path = Path("data")
    database_url: str = ""
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_timeout_seconds: float = Field(default=2.0, gt=0, le=300)

    auth_jwks_url: str = ""
    auth_issuer: str = ""
    auth_audience: str = ""
    auth_nip_claim: str = "sub"
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300)
    auth_jwks_cache_seconds: int = Field(default=300, ge=10, le=86_400)

    policy_max_duration_minutes: int = Field(
        default=480, ge=1, le=LONGEST_WINDOW // timedelta(minutes=1)
    )
    policy_max_lead_days: int = Field(default=90, ge=1, le=3_650)
    # Reminders and escalation of permits still pending near their start (0: off).
    policy_remind_before_start_minutes: int = Field(default=120, ge=0, le=90 * 24 * 60)
    policy_escalate_before_start_minutes: int = Field(default=30, ge=0, le=90 * 24 * 60)

    # Where the public reaches the service: the issuer of signed permits, and the base of
    # every URL they carry (the verify page, the status lists). No trailing slash.
    public_base_url: str = "http://localhost:8000"
    # The signed permits' Ed25519 key (PEM, PKCS#8); without it the service generates one
    # once and keeps it in the database, sealed with SECRETS_KEY (docs/RULES.md#credential-key).
    credential_key_file: Path | None = None

    sweep_interval_seconds: float = Field(default=30, ge=0, le=86_400)

    # Secrets the service must read back (webhook secrets), encrypted with this key:
    # Fernet keys, comma-separated, the first encrypting (docs/SECURITY.md#secrets-key).
    secrets_key: SecretStr = SecretStr("")
    secrets_key_file: Path | None = None

    webhook_timeout_seconds: float = Field(default=10, gt=0, le=120)
    webhook_retry_schedule_seconds: Annotated[list[float], NoDecode] = [
        5, 300, 1800, 7200, 18000, 36000, 36000
    ]  # fmt: skip
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    # Certificate authorities trusted for webhook receivers besides the public ones
    # (a PEM file: e.g. the regency's internal CA).
    webhook_ca_file: Path | None = None
    # Attempts in flight at once, to one endpoint and in all, on each instance.
    webhook_concurrency_per_endpoint: int = Field(default=4, ge=1, le=100)
    webhook_concurrency: int = Field(default=32, ge=1, le=1000)

    # The event stream: a ": ping" comment at least this often; the events one subscriber
    # may have waiting before it is disconnected as too slow.
    event_stream_ping_seconds: float = Field(default=15, gt=0, le=15)
    event_stream_queue_size: int = Field(default=1000, ge=10, le=100_000)

    bootstrap_admin_nips: Annotated[list[str], NoDecode] = []
    rate_limit_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    rate_limit_check_per_minute: int = Field(default=60_000, ge=1, le=10_000_000)
    rate_limit_auth_failures_per_minute: int = Field(default=60, ge=1, le=1_000_000)
    rate_limit_public_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    # Addresses or networks, e.g. 10.0.0.5,10.1.0.0/16 (a network with host bits set, such as
    # 10.0.0.1/8, is refused: it is ambiguous).
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = []
    cors_origins: Annotated[list[str], NoDecode] = []
    docs_enabled: bool = True
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    telemetry: bool = False
    # GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` when set.
    metrics_token: SecretStr = SecretStr("")
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=64 * 1_048_576)

    @field_validator(
        "bootstrap_admin_nips",
        "cors_origins",
        "trusted_proxies",
        "webhook_retry_schedule_seconds",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("bootstrap_admin_nips")
    @classmethod
    def _valid_nips(cls, value: list[str]) -> list[str]:
        for nip in value:
            try:
                infer_employment(nip)
            except NipError as exc:
                raise ValueError(f"{nip!r} is not a valid NIP: {exc}") from exc
        return value

    @field_validator("webhook_retry_schedule_seconds")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if any(delay <= 0 or delay > 7 * 86_400 for delay in value):
            raise ValueError("every delay must be more than 0 and at most 604800 seconds")
        return value

    @field_validator("secrets_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        for part in value.get_secret_value().split(","):
            if part.strip() and len(_urlsafe_b64(part.strip())) != 32:
                raise ValueError(
                    "must be Fernet keys (url-safe base64 of 32 bytes), comma-separated; "
                    "make one with `izin-siaran secrets-key`"
                )
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not origin.startswith(("https://", "http://")) or origin.rstrip("/") != origin:
                raise ValueError(f"{origin!r} is not an origin like https://app.example.go.id")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or value.endswith("/")
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ValueError(
                f"{value!r} is not a base URL like https://izin.anambaskab.go.id "
                "(http or https, a host, no trailing slash, query or fragment)"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _valid_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value:
            return value
        for plain, driver in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if value.startswith(plain):
                return driver + value.removeprefix(plain)
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be a postgresql+asyncpg:// or sqlite+aiosqlite:// URL")
        return value

    @field_validator("auth_jwks_url")
    @classmethod
    def _jwks_scheme(cls, value: str) -> str:
        if value and not value.startswith(("https://", "file://")):
            raise ValueError("must start with https:// or file://")
        return value

    @model_validator(mode="after")
    def _remote_auth_needs_issuer_and_audience(self) -> Settings:
        if self.auth_jwks_url and not (self.auth_issuer and self.auth_audience):
            raise ValueError("AUTH_ISSUER and AUTH_AUDIENCE are required with AUTH_JWKS_URL")
        return self

    @property
    def local_auth(self) -> bool:
        """Local mode: no identity provider, the service signs its own tokens."""
        return not self.auth_jwks_url

    @property
    def issuer(self) -> str:
        return self.auth_issuer or LOCAL_ISSUER

    @property
    def audience(self) -> str:
        return self.auth_audience or LOCAL_AUDIENCE

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'izin-siaran.db').resolve()}"


def _urlsafe_b64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode())
    except (ValueError, binascii.Error):
        return b""


class SettingsError(RuntimeError):
    """Settings that cannot be used; the message names each bad variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            lines.append(f"  {name}: {error['msg']}")
        raise SettingsError("Invalid settings:\n" + "\n".join(lines)) from None
