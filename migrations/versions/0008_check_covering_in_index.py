"""The check's permits covering an instant, ranked from the index (PostgreSQL).

The check ranks a pair's permits covering the instant asked about (docs/RULES.md
#check-ranking, (1)) by their status now, start and id. Found by the pair's index on
`ends_at`, each live permit was then read from the table to see its start and status:
on a pair crowded with a season of permits, dozens of table pages for the one row that
answers. The index now also holds `starts_at`, `status` and `id` (INCLUDE), so the best
permit's id is found in the index alone and only its row is read. SQLite has no INCLUDE
and keeps its indexes: its check keeps its readings (docs/RULES.md#never-stale).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAIRS = {
    "requester_workspace": ["requester_nip", "workspace_code"],
    "channel": ["platform", "channel_key"],
}
INCLUDE = ["starts_at", "status", "id"]  # app.permits.models.COVERING_INCLUDE, as of 0008


def _recreate(include: list[str]) -> None:
    for name, pair in PAIRS.items():
        index = f"ix_permits_{name}_ends"
        op.drop_index(index, table_name="permits")
        op.create_index(index, "permits", [*pair, "ends_at"], postgresql_include=include)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _recreate(INCLUDE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _recreate([])
