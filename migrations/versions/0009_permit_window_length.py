"""A permit's window is at most 7 days, held by the table (docs/RULES.md#longest-window).

The policy never allowed a longer window (`POLICY_MAX_DURATION_MINUTES` is at most 7
days), but nothing held a stored row to it, so the check could not rely on it: to find
the permits covering an instant it read every permit of the pair still to end, a season
of them on a busy channel. With every row held to 7 days, a permit covering an instant
ends within 7 days of it, and the check reads only those (app/authorizations/reader.py).

A database holding a longer window (written by hand: no request could) is not changed:
the upgrade stops and says how many there are, to be shortened or removed first.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# app.permits.models.WINDOW_LENGTH, as of 0009 (SQLite's allows half a second over, for its
# floating-point days).
WINDOW_LENGTH = {
    "postgresql": "ends_at - starts_at <= interval '604800 seconds'",
    "sqlite": "(julianday(ends_at) - julianday(starts_at)) * 86400 <= 604800.5",
}


def upgrade() -> None:
    bind = op.get_bind()
    length = WINDOW_LENGTH[bind.dialect.name]
    longer = f"FROM permits WHERE NOT ({length})"
    found = bind.scalar(sa.text(f"SELECT count(*) {longer}"))
    if found:
        raise RuntimeError(
            f"{found} permit(s) have a window longer than 7 days, which no request could "
            f"submit: shorten or remove them (SELECT id, starts_at, ends_at {longer}), "
            "then upgrade again"
        )
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.create_check_constraint("window_length", length)


def downgrade() -> None:
    with op.batch_alter_table("permits", schema=None) as batch_op:
        batch_op.drop_constraint("window_length", type_="check")
