"""`izin-siaran`: the operator's entry point."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from app.config import Settings, SettingsError, load_settings

SHUTDOWN_GRACE_SECONDS = 5

cli = typer.Typer(
    name="izin-siaran",
    help="Izin Siaran: live-stream permits under SE Bupati Kepulauan Anambas 47/2025.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _require_migrated(settings: Settings) -> None:
    """Say plainly, before uvicorn starts, that the database needs `migrate`."""
    from app.db import Database
    from app.files import private_dir
    from app.migrate import SchemaNotAtHead, require_head

    async def check() -> None:
        private_dir(settings.data_dir)
        db = Database.connect(
            settings.effective_database_url,
            pool_size=1,
            timeout=settings.database_timeout_seconds,
        )
        try:
            await require_head(db.engine)
        finally:
            await db.dispose()

    try:
        asyncio.run(check())
    except SchemaNotAtHead as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only).")] = 1,
) -> None:
    """Run the API with uvicorn. The database must already be migrated."""
    import uvicorn

    from app.logs import configure_logging
    from app.metrics import prepare_multiprocess

    settings = _settings()
    if workers > 1 and settings.effective_database_url.startswith("sqlite"):
        typer.echo("SQLite serves one worker; use PostgreSQL for more.", err=True)
        raise typer.Exit(2)
    _require_migrated(settings)
    configure_logging(settings.log_level, settings.log_format)
    prepare_multiprocess(workers, settings.data_dir)
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        # uvicorn's own lines go to the service's handler, in LOG_FORMAT like every other.
        log_config=None,
        # X-Forwarded-For is read by the app, and only from TRUSTED_PROXIES (app.main).
        proxy_headers=False,
        # Event streams never end by themselves: on a stop, requests still open after this
        # are ended (a stream's client resumes elsewhere with Last-Event-ID).
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


@cli.command()
def migrate() -> None:
    """Bring the database (DATABASE_URL) to the newest schema."""
    from app.migrate import head_revision, upgrade

    settings = _settings()
    upgrade(settings.effective_database_url)
    typer.echo(f"database at revision {head_revision()}")


@cli.command()
def token(
    nip: Annotated[str, typer.Argument(help="NIP of the employee the token speaks for.")],
    minutes: Annotated[int, typer.Option(min=1, max=24 * 60, help="Lifetime.")] = 60,
) -> None:
    """Mint a bearer token in local mode (no AUTH_JWKS_URL)."""
    from app.auth.local import load_or_create_signer
    from app.nip import NipError, infer_employment

    settings = _settings()
    if not settings.local_auth:
        typer.echo("Tokens come from the identity provider when AUTH_JWKS_URL is set.", err=True)
        raise typer.Exit(2)
    try:
        infer_employment(nip)
    except NipError as exc:
        typer.echo(f"{nip} is not a valid NIP: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(load_or_create_signer(settings.data_dir).mint(settings, nip, minutes=minutes))


@cli.command("secrets-key")
def secrets_key() -> None:
    """Print a new SECRETS_KEY (a Fernet key). To rotate, set SECRETS_KEY=<new>,<old>: the
    first seals, every one opens."""
    from app.secretbox import new_key

    typer.echo(new_key())


@cli.command()
def sweep() -> None:
    """Record `expired` on pending permits whose window has begun, and the reminders and
    escalations now due; forget idempotency keys older than 24 h. Safe to run on many
    instances at once (e.g. from cron every minute)."""
    from app.sweeper import sweep_once

    settings = _settings()
    expired, noticed, forgotten = asyncio.run(sweep_once(settings))
    typer.echo(
        f"expired {expired} permit(s); recorded {noticed} reminder(s) and escalation(s); "
        f"forgot {forgotten} idempotency key(s)"
    )


@cli.command()
def demo() -> None:
    """Load an example organisation of Pemkab Kepulauan Anambas (safe to run twice)."""
    from app.demo import load_demo

    settings = _settings()
    created = asyncio.run(load_demo(settings))
    typer.echo(created)


audit_cli = typer.Typer(help="Verify the audit chain and print its head.", no_args_is_help=True)
cli.add_typer(audit_cli, name="audit")


async def _verify_database(settings: Settings) -> dict[str, object]:
    from app.audit import queries
    from app.audit.verify import verify_stream
    from app.db import Database

    db = Database.connect(
        settings.effective_database_url,
        pool_size=1,
        timeout=settings.database_timeout_seconds,
    )
    try:
        walk = queries.walk(db, queries.filtered(queries.EventFilters()))
        return (await verify_stream(walk)).as_json()
    finally:
        await db.dispose()


def _verify_api(url: str, token: str) -> dict[str, object]:
    import httpx

    from app.audit.verify import ChainVerifier

    verifier = ChainVerifier()
    cursor: str | None = None
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        while True:
            params: dict[str, str | int] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            response = http.get("/api/v1/audit/events", params=params)
            response.raise_for_status()
            page = response.json()
            if not verifier.feed(page["items"]) or not page["next_cursor"]:
                return verifier.report.as_json()
            cursor = page["next_cursor"]


@audit_cli.command("verify")
def audit_verify(
    url: Annotated[
        str | None,
        typer.Option(help="Verify through a running service's API instead of the database."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="IZIN_SIARAN_TOKEN", help="Auditor's bearer token (with --url)."),
    ] = None,
) -> None:
    """Recompute every hash of the chain; exit 1 if it is broken."""
    import json

    if url is not None:
        if not token:
            typer.echo("--url needs --token (or IZIN_SIARAN_TOKEN)", err=True)
            raise typer.Exit(2)
        result = _verify_api(url, token)
    else:
        result = asyncio.run(_verify_database(_settings()))
    typer.echo(json.dumps(result))
    if not result["valid"]:
        raise typer.Exit(1)


@audit_cli.command("head")
def audit_head() -> None:
    """Print the newest event's seq, hash and time, for an auditor to keep outside the service."""
    from app.audit import queries
    from app.db import Database

    async def head() -> str:
        db = Database.connect(
            _settings().effective_database_url,
            pool_size=1,
            timeout=_settings().database_timeout_seconds,
        )
        try:
            newest = await queries.head(db)
        finally:
            await db.dispose()
        if newest is None:
            return "0 " + "0" * 64
        return f"{newest.seq} {newest.hash} {newest.at}"

    typer.echo(asyncio.run(head()))


webhooks_cli = typer.Typer(
    help="Webhooks and their deliveries, read from the database (docs/RULES.md#webhooks).",
    no_args_is_help=True,
)
cli.add_typer(webhooks_cli, name="webhooks")


def _database(settings: Settings) -> Any:
    from app.db import Database

    return Database.connect(
        settings.effective_database_url, pool_size=1, timeout=settings.database_timeout_seconds
    )


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


@webhooks_cli.command("list")
def webhooks_list() -> None:
    """Every webhook, with how many of its deliveries are pending and failed."""
    from sqlalchemy import func, select

    from app.outbox.models import Webhook, WebhookDelivery

    async def listing() -> list[list[str]]:
        db = _database(_settings())
        try:
            async with db.read() as session:
                counts = {
                    (hook, status): n
                    for hook, status, n in await session.execute(
                        select(
                            WebhookDelivery.webhook_id, WebhookDelivery.status, func.count()
                        ).group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
                    )
                }
                hooks = (await session.scalars(select(Webhook).order_by(Webhook.id))).all()
                return [
                    [
                        h.id,
                        "active" if h.active else "inactive",
                        str(counts.get((h.id, "pending"), 0)),
                        str(counts.get((h.id, "failed"), 0)),
                        ",".join(h.events),
                        h.url,
                    ]
                    for h in hooks
                ]
        finally:
            await db.dispose()

    rows = asyncio.run(listing())
    typer.echo(_table(rows, ["id", "state", "pending", "failed", "events", "url"]))


@webhooks_cli.command("failed")
def webhooks_failed(
    webhook: Annotated[str | None, typer.Option(help="Only this webhook's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
) -> None:
    """Failed deliveries, newest first: what `redeliver` can send again."""
    from sqlalchemy import select

    from app.outbox.models import WebhookDelivery
    from app.timeutil import format_instant

    async def failed() -> list[list[str]]:
        db = _database(_settings())
        try:
            async with db.read() as session:
                statement = select(WebhookDelivery).where(WebhookDelivery.status == "failed")
                if webhook is not None:
                    statement = statement.where(WebhookDelivery.webhook_id == webhook)
                rows = await session.scalars(
                    statement.order_by(WebhookDelivery.id.desc()).limit(limit)
                )
                return [
                    [
                        d.id,
                        d.webhook_id,
                        d.event_type,
                        str(d.attempts),
                        str(d.last_status_code or "-"),
                        d.last_error or "-",
                        format_instant(d.created_at),
                    ]
                    for d in rows
                ]
        finally:
            await db.dispose()

    rows = asyncio.run(failed())
    header = ["delivery", "webhook", "event", "attempts", "status", "error", "created_at"]
    typer.echo(_table(rows, header))


@webhooks_cli.command("redeliver")
def webhooks_redeliver(
    delivery: Annotated[str, typer.Argument(help="The delivery's id (see `failed`).")],
) -> None:
    """Send a delivery's message again (the same `webhook-id` and body), as a new delivery;
    audited as `webhook.redelivered` by `system`. A running service sends it."""
    from app.audit.service import SYSTEM_ACTOR
    from app.errors import AppError
    from app.outbox.models import WebhookDelivery
    from app.push.webhooks import redeliver

    async def again() -> str:
        db = _database(_settings())
        try:
            async with db.write() as session, session.begin():
                row = await session.get(WebhookDelivery, delivery)
                if row is None:
                    raise typer.BadParameter(f"no delivery {delivery}")
                new = await redeliver(session, SYSTEM_ACTOR, row.webhook_id, delivery)
                return new.id
        finally:
            await db.dispose()

    try:
        typer.echo(f"queued as delivery {asyncio.run(again())}")
    except AppError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from None


credential_key_cli = typer.Typer(
    help="The key signed permits are signed with (docs/RULES.md#credential-key).",
    no_args_is_help=True,
)
cli.add_typer(credential_key_cli, name="credential-key")


@credential_key_cli.command("list")
def credential_key_list() -> None:
    """Every key that has signed permits: the one that signs now, and until when each
    retired one stays published."""
    from app.credentials.keys import list_keys
    from app.timeutil import format_instant

    async def listing() -> list[list[str]]:
        db = _database(_settings())
        try:
            async with db.read() as session:
                return [
                    [
                        key.kid,
                        "signing" if key.retired_at is None else "retired",
                        "file" if key.private_sealed is None else "generated",
                        format_instant(key.created_at),
                        format_instant(key.published_until) if key.published_until else "-",
                    ]
                    for key in await list_keys(session)
                ]
        finally:
            await db.dispose()

    rows = asyncio.run(listing())
    typer.echo(_table(rows, ["kid", "state", "source", "created", "published until"]))


@credential_key_cli.command("rotate")
def credential_key_rotate() -> None:
    """Sign with a new generated key from now on. The key before stays published until
    every permit it can have signed has ended, so its credentials keep verifying; running
    instances sign with the new key within 10 s."""
    from app.credentials.keys import CredentialKeyError, rotate_signing_key
    from app.secretbox import SecretsKeyError, load_secret_box

    settings = _settings()

    async def rotate() -> str:
        db = _database(settings)
        try:
            async with db.write() as session, session.begin():
                return await rotate_signing_key(session, load_secret_box(settings), settings)
        finally:
            await db.dispose()

    try:
        typer.echo(f"signing with {asyncio.run(rotate())}")
    except (CredentialKeyError, SecretsKeyError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
