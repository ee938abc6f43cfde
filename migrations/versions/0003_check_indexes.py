"""The check's indexes lead with the pair, then `ends_at`.

Every read of the check is a range of `ends_at` within one (employee, workspace)
or (platform, channel) pair: the live permits (`ends_at > at`), the approved one
holding the instant, the last one that ended (`ends_at <= at`, newest first).
Indexed by `starts_at`, the last two walked the pair's whole history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_permits_requester_workspace_ends",
        "permits",
        ["requester_nip", "workspace_code", "ends_at"],
    )
    op.create_index("ix_permits_channel_ends", "permits", ["platform", "channel_key", "ends_at"])
    op.drop_index("ix_permits_requester_workspace", table_name="permits")
    op.drop_index("ix_permits_channel", table_name="permits")


def downgrade() -> None:
    op.create_index(
        "ix_permits_requester_workspace",
        "permits",
        ["requester_nip", "workspace_code", "starts_at"],
    )
    op.create_index("ix_permits_channel", "permits", ["platform", "channel_key", "starts_at"])
    op.drop_index("ix_permits_requester_workspace_ends", table_name="permits")
    op.drop_index("ix_permits_channel_ends", table_name="permits")
