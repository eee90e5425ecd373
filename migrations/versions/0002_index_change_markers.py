"""index the change log's pruned markers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 21:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MARKERS = sa.text("op = 'pruned'")


def upgrade() -> None:
    with op.batch_alter_table("index_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_index_changes_markers",
            ["account_id", "collection", "collection_id"],
            unique=False,
            sqlite_where=MARKERS,
            postgresql_where=MARKERS,
        )


def downgrade() -> None:
    with op.batch_alter_table("index_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_index_changes_markers")
