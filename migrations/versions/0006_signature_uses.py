"""signatures already used, for the dialects that refuse replays (Tencent code 13)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signature_uses",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_signature_uses_expires_at", "signature_uses", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_signature_uses_expires_at", table_name="signature_uses")
    op.drop_table("signature_uses")
