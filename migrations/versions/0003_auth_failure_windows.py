"""failed authentications per client address and api_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_failure_windows",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start"),
    )


def downgrade() -> None:
    op.drop_table("auth_failure_windows")
