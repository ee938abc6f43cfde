"""Push: webhooks and their deliveries (the outbox), the event stream's tickets, and when
the reminder and the escalation of a pending permit were recorded (docs/RULES.md#push,
#escalation).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "event_tickets",
        sa.Column("ticket_sha256", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("ticket_sha256", name=op.f("pk_event_tickets")),
    )
    with op.batch_alter_table("event_tickets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_tickets_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("previous_secret_sealed", sa.Text(), nullable=True),
        sa.Column("previous_secret_until", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("webhook_id", sa.String(length=26), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("audit_seq", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=True),
        sa.Column("lease", sa.String(length=32), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", TZ, nullable=True),
        sa.Column("succeeded_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')",
            name=op.f("ck_webhook_deliveries_delivery_status"),
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_deliveries_webhook_id_webhooks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_webhook_deliveries_webhook", ["webhook_id", "id"], unique=False)

    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reminded_at", TZ, nullable=True))
        batch_op.add_column(sa.Column("escalated_at", TZ, nullable=True))
    for recorded in ("reminded_at", "escalated_at"):
        where = sa.text(f"status = 'pending' AND {recorded} IS NULL")
        op.create_index(
            f"ix_permits_{recorded}_due",
            "permits",
            ["starts_at"],
            postgresql_where=where,
            sqlite_where=where,
        )


def downgrade() -> None:
    for recorded in ("reminded_at", "escalated_at"):
        op.drop_index(f"ix_permits_{recorded}_due", table_name="permits")
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("reminded_at")

    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_webhook")
        batch_op.drop_index("ix_webhook_deliveries_due")

    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    with op.batch_alter_table("event_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_tickets_expires_at"))

    op.drop_table("event_tickets")
