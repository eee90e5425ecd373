"""the store's identity: one random id, carried by the names of its Milvus collections

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 14:10:00.000000
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_identity",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(32), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "uuid": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("store_identity")
