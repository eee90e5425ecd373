"""the address an image was fetched from, for the dialects that show it (Alibaba's face url)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as table:
        table.add_column(sa.Column("source_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as table:
        table.drop_column("source_url")
