"""Settings (docs/RULES.md #conventions): read from the environment and `.env`, checked once at
start-up.

A bad value stops start-up with a message naming each bad variable. These are
pure tests of `app/config.py`; no ambient environment or `.env` leaks in.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    LONGEST_WINDOW,
    Settings,
    SettingsError,
    load_settings,
)

ADMIN = "198904042014021003"
OTHER_ADMIN = "198503102010011001"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the environment, and a working directory without `.env`."""
    names = {name.upper() for name in Settings.model_fields}
    for variable in list(os.environ):
        if variable.upper() in names:
            monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(**environment: str) -> str:
    """The SettingsError message for these environment variables."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        with pytest.raises(SettingsError) as error:
            load_settings()
    return str(error.value)


# --- defaults -----------------------------------------------------------------------


def test_defaults_are_local_mode_on_a_sqlite_file_in_the_data_directory(
    clean_environment: Path,
) -> None:
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.database_url == ""
    expected = clean_environment / "data" / "izin-siaran.db"
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{expected}"
    assert settings.local_auth
    assert (settings.issuer, settings.audience) == (LOCAL_ISSUER, LOCAL_AUDIENCE)
    assert settings.bootstrap_admin_nips == []
    assert settings.log_level == "INFO"
    assert (settings.policy_max_duration_minutes, settings.policy_max_lead_days) == (480, 90)


def test_the_default_database_follows_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var" / "izin"))
    settings = load_settings()
    assert settings.data_dir == tmp_path / "var" / "izin"
    assert (
        settings.effective_database_url
        == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'izin' / 'izin-siaran.db'}"
    )


def test_a_relative_data_dir_gives_an_absolute_database_path(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", "state")
    url = load_settings().effective_database_url
    assert url == f"sqlite+aiosqlite:///{clean_environment / 'state' / 'izin-siaran.db'}"


def test_an_explicit_database_url_wins_over_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", "/srv/izin")
    monkeypatch.setenv("DATABASE_URL", "postgresql://izin@db.internal/izin")
    assert load_settings().effective_database_url == "postgresql+asyncpg://izin@db.internal/izin"


# --- DATABASE_URL -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:////srv/izin.db", "sqlite+aiosqlite:////srv/izin.db"),
        ("sqlite+aiosqlite:////srv/izin.db", "sqlite+aiosqlite:////srv/izin.db"),
    ],
)
def test_database_urls_are_normalised_to_async_drivers(
    monkeypatch: pytest.MonkeyPatch, given: str, used: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    settings = load_settings()
    assert settings.database_url == used
    assert settings.effective_database_url == used


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "postgresql+psycopg://u@h/db", "oracle://h/db", "izin-siaran.db"],
)
def test_an_unsupported_database_is_refused(url: str) -> None:
    message = refused(DATABASE_URL=url)
    assert "DATABASE_URL" in message
    assert "postgresql+asyncpg://" in message


# --- AUTH_* -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://sso.example.go.id/jwks", "ftp://x/jwks", "/etc/jwks"])
def test_the_jwks_url_must_be_https_or_file(url: str) -> None:
    message = refused(AUTH_JWKS_URL=url, AUTH_ISSUER="https://sso", AUTH_AUDIENCE="izin-siaran")
    assert "AUTH_JWKS_URL" in message
    assert "https://" in message


@pytest.mark.parametrize(
    "missing", [("AUTH_ISSUER", "AUTH_AUDIENCE"), ("AUTH_ISSUER",), ("AUTH_AUDIENCE",)]
)
def test_a_jwks_url_needs_an_issuer_and_an_audience(missing: tuple[str, ...]) -> None:
    environment = {
        "AUTH_JWKS_URL": "https://sso.example.go.id/jwks",
        "AUTH_ISSUER": "https://sso.example.go.id/realms/asn",
        "AUTH_AUDIENCE": "izin-siaran",
    }
    for name in missing:
        del environment[name]
    message = refused(**environment)
    assert "AUTH_ISSUER" in message
    assert "AUTH_AUDIENCE" in message


@pytest.mark.parametrize(
    "url", ["https://sso.example.go.id/realms/asn/certs", "file:///etc/izin/jwks.json"]
)
def test_an_identity_provider_ends_local_mode(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("AUTH_JWKS_URL", url)
    monkeypatch.setenv("AUTH_ISSUER", "https://sso.example.go.id/realms/asn")
    monkeypatch.setenv("AUTH_AUDIENCE", "izin-siaran")
    settings = load_settings()
    assert not settings.local_auth
    assert settings.auth_jwks_url == url
    assert settings.issuer == "https://sso.example.go.id/realms/asn"
    assert settings.audience == "izin-siaran"


# --- BOOTSTRAP_ADMIN_NIPS -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "nips"),
    [
        (ADMIN, [ADMIN]),
        (f"{ADMIN},{OTHER_ADMIN}", [ADMIN, OTHER_ADMIN]),
        (f" {ADMIN} , {OTHER_ADMIN} ,", [ADMIN, OTHER_ADMIN]),
        ("", []),
    ],
)
def test_bootstrap_admins_are_a_comma_list(
    monkeypatch: pytest.MonkeyPatch, value: str, nips: list[str]
) -> None:
    monkeypatch.setenv("BOOTSTRAP_ADMIN_NIPS", value)
    assert load_settings().bootstrap_admin_nips == nips


@pytest.mark.parametrize("bad", ["12345", "198913452014021003", "not-a-nip"])
def test_a_bad_bootstrap_nip_is_refused_by_name(bad: str) -> None:
    message = refused(BOOTSTRAP_ADMIN_NIPS=f"{ADMIN},{bad}")
    assert "BOOTSTRAP_ADMIN_NIPS" in message
    assert bad in message
    assert ADMIN not in message  # only the bad one is named


# --- every bad variable is named --------------------------------------------------


def test_load_settings_names_each_bad_variable() -> None:
    message = refused(
        DATABASE_URL="mysql://u@h/db",
        LOG_LEVEL="LOUD",
        POLICY_MAX_LEAD_DAYS="0",
        BOOTSTRAP_ADMIN_NIPS="123",
        DATABASE_POOL_SIZE="many",
    )
    assert message.startswith("Invalid settings:")
    lines = message.splitlines()[1:]
    named = {line.strip().split(":")[0] for line in lines}
    assert named == {
        "DATABASE_URL",
        "LOG_LEVEL",
        "POLICY_MAX_LEAD_DAYS",
        "BOOTSTRAP_ADMIN_NIPS",
        "DATABASE_POOL_SIZE",
    }


def test_a_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"
    assert "LOG_LEVEL" in refused(LOG_LEVEL="LOUD")


def test_keyword_overrides_are_checked_like_the_environment() -> None:
    with pytest.raises(SettingsError, match="POLICY_MAX_DURATION_MINUTES"):
        load_settings(policy_max_duration_minutes=0)
    assert load_settings(policy_max_duration_minutes=60).policy_max_duration_minutes == 60


def test_the_policy_allows_no_window_longer_than_the_table_keeps() -> None:
    """docs/RULES.md#longest-window: the check relies on it (tests/test_longest_window.py)."""
    longest = LONGEST_WINDOW // timedelta(minutes=1)
    assert load_settings(policy_max_duration_minutes=longest).policy_max_duration_minutes == longest
    with pytest.raises(SettingsError, match="POLICY_MAX_DURATION_MINUTES"):
        load_settings(policy_max_duration_minutes=longest + 1)


# --- .env ---------------------------------------------------------------------------


def test_dot_env_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    (clean_environment / ".env").write_text(
        "LOG_LEVEL=WARNING\nPOLICY_MAX_LEAD_DAYS=30\nBOOTSTRAP_ADMIN_NIPS=" + ADMIN + "\n"
    )
    from_file = load_settings()
    assert from_file.log_level == "WARNING"
    assert from_file.policy_max_lead_days == 30
    assert from_file.bootstrap_admin_nips == [ADMIN]
    monkeypatch.setenv("POLICY_MAX_LEAD_DAYS", "7")
    assert load_settings().policy_max_lead_days == 7


def test_a_bad_value_in_dot_env_is_named(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("LOG_LEVEL=LOUD\n")
    assert "LOG_LEVEL" in refused()


def test_settings_without_an_env_file_ignore_dot_env(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("POLICY_MAX_LEAD_DAYS=30\nLOG_LEVEL=LOUD\n")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.policy_max_lead_days == 90
    assert settings.log_level == "INFO"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.log_level = "DEBUG"  # type: ignore[misc]
