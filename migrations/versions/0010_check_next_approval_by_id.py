"""The check's next approval to start, in one index probe: the pair's approvals by (start, id).

The check picks, when nothing covers the instant asked about, the next approved permit
to start after it, ties by id (docs/RULES.md#check-ranking, (2)). Indexed by start only,
its id took a second read: the pair's permits ending within a week of that start, by
`ends_at`, filtered (15 entries for one on a crowded pair). With the id in the index of
the pair's approvals, the answer is the first entry of one range, read from the index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPROVED = sa.text("status = 'approved'")
PAIRS = {
    "requester_workspace": ["requester_nip", "workspace_code"],
    "channel": ["platform", "channel_key"],
}


def _index(name: str, columns: list[str]) -> None:
    op.drop_index(f"ix_permits_{name}_approved_starts", table_name="permits")
    op.create_index(
        f"ix_permits_{name}_approved_starts",
        "permits",
        columns,
        postgresql_where=APPROVED,
        sqlite_where=APPROVED,
    )


def upgrade() -> None:
    for name, pair in PAIRS.items():
        _index(name, [*pair, "starts_at", "id"])


def downgrade() -> None:
    for name, pair in PAIRS.items():
        _index(name, [*pair, "starts_at"])
