"""Signed permits: the keys they are signed with, the status lists, and each approved
permit's entry in one (docs/RULES.md#signed-permits, #status-lists). Permits approved
before this revision get their entry here, as an approval now would.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
SIZE = 1 << 17  # app/permits/status_list.py SIZE and FILL, as they were at this revision
FILL = SIZE // 2


def upgrade() -> None:
    op.create_table(
        "credential_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("private_sealed", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("retired_at", TZ, nullable=True),
        sa.Column("published_until", TZ, nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_credential_keys")),
    )
    status_lists = op.create_table(
        "status_lists",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_status_lists")),
    )
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_list", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("status_idx", sa.Integer(), nullable=True))
        batch_op.create_index("uq_permits_status_entry", ["status_list", "status_idx"], unique=True)
    _give_entries(status_lists)
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "status_entry", "status <> 'approved' OR status_idx IS NOT NULL"
        )


def _give_entries(status_lists: sa.Table) -> None:
    """Every approved permit gets a random free entry, lists filling to half as in
    `app.permits.status_list.allot`."""
    bind = op.get_bind()
    permits = sa.table(
        "permits",
        sa.column("id", sa.String),
        sa.column("status", sa.String),
        sa.column("status_list", sa.Integer),
        sa.column("status_idx", sa.Integer),
    )
    ids = bind.scalars(
        sa.select(permits.c.id).where(permits.c.status == "approved").order_by(permits.c.id)
    ).all()
    if not ids:
        return
    entries: list[dict[str, object]] = []
    lists: list[dict[str, object]] = []
    for start in range(0, len(ids), FILL):
        number = len(lists)
        chunk = ids[start : start + FILL]
        indexes = _distinct_indexes(len(chunk))
        entries += [
            {"permit_id": i, "list": number, "idx": x} for i, x in zip(chunk, indexes, strict=True)
        ]
        lists.append(
            {"number": number, "size": SIZE, "used": len(chunk), "created_at": datetime.now(UTC)}
        )
    op.bulk_insert(status_lists, lists)
    bind.execute(
        permits.update()
        .where(permits.c.id == sa.bindparam("permit_id"))
        .values(status_list=sa.bindparam("list"), status_idx=sa.bindparam("idx")),
        entries,
    )


def _distinct_indexes(count: int) -> list[int]:
    """`count` distinct indexes, at random and in random order."""
    return secrets.SystemRandom().sample(range(SIZE), count)


def downgrade() -> None:
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.drop_constraint("status_entry", type_="check")
        batch_op.drop_index("uq_permits_status_entry")
        batch_op.drop_column("status_idx")
        batch_op.drop_column("status_list")
    op.drop_table("status_lists")
    op.drop_table("credential_keys")
