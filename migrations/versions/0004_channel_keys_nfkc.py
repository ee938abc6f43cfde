"""Channel keys are recomputed under the NFKC rule (docs/RULES.md#channels).

Until now a permit's `channel_key` was its channel trimmed, lower-cased, without a
leading `@`; full-width and other compatibility look-alikes made different keys, so
a check could miss a permit. Every stored key is recomputed by the rule's one home,
`app.permits.vocabulary.channel_key`, in batches. Downgrading keeps the new keys:
they match everything the old ones did.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.permits.vocabulary import channel_key

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000

permits = sa.table(
    "permits",
    sa.column("id", sa.String),
    sa.column("channel", sa.String),
    sa.column("channel_key", sa.String),
)


def upgrade() -> None:
    connection = op.get_bind()
    after = ""
    while True:
        rows = connection.execute(
            sa.select(permits.c.id, permits.c.channel, permits.c.channel_key)
            .where(permits.c.id > after)
            .order_by(permits.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        changed = [
            {"row_id": row.id, "key": channel_key(row.channel)}
            for row in rows
            if channel_key(row.channel) != row.channel_key
        ]
        if changed:
            connection.execute(
                permits.update()
                .where(permits.c.id == sa.bindparam("row_id"))
                .values(channel_key=sa.bindparam("key")),
                changed,
            )
        after = rows[-1].id


def downgrade() -> None:
    pass
