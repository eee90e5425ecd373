"""client-chosen keys on persons, groups and facesets

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("persons", "groups", "facesets")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("key", sa.String(length=128), nullable=True))
        # NULLs are distinct in a unique index on both databases: keyless rows never collide.
        op.create_index(f"uq_{table}_account_key", table, ["account_id", "key"], unique=True)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"uq_{table}_account_key", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("key")
