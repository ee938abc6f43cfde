"""The check's next approval to start: an index of each pair's approved permits by start.

The check reads, for a pair, the next approved permit to start after the instant
asked about (docs/RULES.md#check-ranking, (2)). By `ends_at` that was every live permit
of the pair, each read from the table to see its status and start: a pair crowded with
a season of permits read dozens of rows for one. Approved permits only, by start, it is
the first entry of a range.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPROVED = sa.text("status = 'approved'")
PAIRS = {
    "requester_workspace": ["requester_nip", "workspace_code"],
    "channel": ["platform", "channel_key"],
}


def upgrade() -> None:
    for name, pair in PAIRS.items():
        op.create_index(
            f"ix_permits_{name}_approved_starts",
            "permits",
            [*pair, "starts_at"],
            postgresql_where=APPROVED,
            sqlite_where=APPROVED,
        )


def downgrade() -> None:
    for name in PAIRS:
        op.drop_index(f"ix_permits_{name}_approved_starts", table_name="permits")
