"""Organisation, API keys and the append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)

_PG_REFUSE_CHANGE = """
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )

    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("unit_code", sa.String(32), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
    )
    for column in ("action", "actor", "at", "subject", "unit_code"):
        op.create_index(op.f(f"ix_audit_events_{column}"), "audit_events", [column])

    # units.head_nip and employees.unit_code refer to each other. SQLite accepts a
    # reference to a table that does not exist yet (and cannot add one later);
    # PostgreSQL gets the constraint once both tables exist.
    head_fk = (
        [
            sa.ForeignKeyConstraint(
                ["head_nip"], ["employees.nip"], name=op.f("fk_units_head_nip_employees")
            )
        ]
        if sqlite
        else []
    )
    op.create_table(
        "units",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("parent_code", sa.String(32), nullable=True),
        sa.Column("head_nip", sa.String(18), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        *head_fk,
        sa.ForeignKeyConstraint(
            ["parent_code"], ["units.code"], name=op.f("fk_units_parent_code_units")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_units")),
    )
    op.create_index(op.f("ix_units_head_nip"), "units", ["head_nip"])
    op.create_index(op.f("ix_units_parent_code"), "units", ["parent_code"])

    op.create_table(
        "employees",
        sa.Column("nip", sa.String(18), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("employment", sa.String(10), nullable=False),
        sa.Column("unit_code", sa.String(32), nullable=True),
        sa.Column("position", sa.String(200), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_auditor", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint("employment IN ('pns', 'pppk')", name=op.f("ck_employees_employment")),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["units.code"], name=op.f("fk_employees_unit_code_units")
        ),
        sa.PrimaryKeyConstraint("nip", name=op.f("pk_employees")),
    )
    op.create_index(op.f("ix_employees_unit_code"), "employees", ["unit_code"])
    if not sqlite:
        op.create_foreign_key(
            op.f("fk_units_head_nip_employees"), "units", "employees", ["head_nip"], ["nip"]
        )

    op.create_table(
        "workspaces",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("unit_code", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint(
            "kind IN ('administrative', 'service', 'meeting', 'studio', 'other')",
            name=op.f("ck_workspaces_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["units.code"], name=op.f("fk_workspaces_unit_code_units")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_workspaces")),
    )
    op.create_index(op.f("ix_workspaces_unit_code"), "workspaces", ["unit_code"])

    op.create_table(
        "delegations",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("unit_code", sa.String(32), nullable=False),
        sa.Column("delegate_nip", sa.String(18), nullable=False),
        sa.Column("kind", sa.String(3), nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("ends_at", TZ, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.CheckConstraint("kind IN ('plh', 'plt')", name=op.f("ck_delegations_kind")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_delegations_window")),
        sa.ForeignKeyConstraint(
            ["delegate_nip"], ["employees.nip"], name=op.f("fk_delegations_delegate_nip_employees")
        ),
        sa.ForeignKeyConstraint(
            ["unit_code"], ["units.code"], name=op.f("fk_delegations_unit_code_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delegations")),
    )
    op.create_index(op.f("ix_delegations_delegate_nip"), "delegations", ["delegate_nip"])
    op.create_index("ix_delegations_unit_code_starts_at", "delegations", ["unit_code", "starts_at"])

    # The audit log is append-only, enforced by the database itself.
    if sqlite:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_refuse_{operation.lower()} "
                f"BEFORE {operation} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: {operation} refused'); END"
            )
    else:
        op.execute(_PG_REFUSE_CHANGE)
        op.execute(
            "CREATE TRIGGER audit_events_refuse_change BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_refuse_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()"
        )


def downgrade() -> None:
    raise NotImplementedError("The audit log is never dropped; restore from a backup instead.")
