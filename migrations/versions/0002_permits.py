"""Permits, idempotency records, and the no-overlap rule for approved permits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "permits",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("requester_nip", sa.String(18), nullable=False),
        sa.Column("workspace_code", sa.String(32), nullable=False),
        sa.Column("unit_code", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("channel_key", sa.String(200), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("ends_at", TZ, nullable=False),
        sa.Column("attestations", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_as", sa.String(16), nullable=True),
        sa.Column("decided_at", TZ, nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("closed_at", TZ, nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            _in("platform", ("youtube", "tiktok", "instagram", "facebook", "x", "other")),
            name=op.f("ck_permits_platform"),
        ),
        sa.CheckConstraint(
            _in(
                "purpose",
                ("official", "public_service", "public_information", "education", "personal"),
            ),
            name=op.f("ck_permits_purpose"),
        ),
        sa.CheckConstraint(
            _in("status", ("pending", "approved", "denied", "cancelled", "expired", "revoked")),
            name=op.f("ck_permits_status"),
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_permits_window")),
        sa.ForeignKeyConstraint(
            ["requester_nip"], ["employees.nip"], name=op.f("fk_permits_requester_nip_employees")
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["units.code"], name=op.f("fk_permits_unit_code_units")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_code"],
            ["workspaces.code"],
            name=op.f("fk_permits_workspace_code_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_permits")),
    )
    op.create_index(
        "ix_permits_requester_workspace",
        "permits",
        ["requester_nip", "workspace_code", "starts_at"],
    )
    op.create_index("ix_permits_channel", "permits", ["platform", "channel_key", "starts_at"])
    op.create_index("ix_permits_workspace_starts_at", "permits", ["workspace_code", "starts_at"])
    op.create_index("ix_permits_unit_status", "permits", ["unit_code", "status"])

    op.create_table(
        "idempotency_records",
        sa.Column("principal", sa.String(64), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_idempotency_records")),
    )
    op.create_index(
        op.f("ix_idempotency_records_created_at"), "idempotency_records", ["created_at"]
    )

    if op.get_bind().dialect.name == "postgresql":
        # Two approved permits of one workspace never overlap, whatever runs concurrently.
        # Half-open ranges: back-to-back windows do not conflict.
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE permits ADD CONSTRAINT ex_permits_approved_no_overlap "
            "EXCLUDE USING gist (workspace_code WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&) "
            "WHERE (status = 'approved')"
        )


def downgrade() -> None:
    op.drop_table("idempotency_records")
    op.drop_table("permits")
