"""Alembic, driven from code: the CLI's `migrate` and the start-up schema check."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

PROJECT_DIR = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = PROJECT_DIR / "migrations"


class SchemaNotAtHead(RuntimeError):
    pass


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision in `migrations/`: part of the installed code, so read once (each
    start-up and each `/readyz` asks)."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head is not None, "migrations/ holds no revision"
    return head


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        try:
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            return str(revision) if revision is not None else None
        except DBAPIError as exc:
            if "alembic_version" in str(exc.orig):
                return None  # an empty database: no table yet
            raise


async def require_head(engine: AsyncEngine) -> None:
    """Refuse to serve a database whose schema is not the one this code was written for."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        found = f"at revision {current}" if current else "not migrated"
        raise SchemaNotAtHead(
            f"The database is {found}; this version of Izin Siaran needs revision {head}. "
            "Run `izin-siaran migrate` (with the same DATABASE_URL) and start again."
        )
