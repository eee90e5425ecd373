"""a small JPEG crop per face, for the web console's thumbnails

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 16:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "face_thumbnails",
        sa.Column(
            "face_id",
            BigId,
            sa.ForeignKey("faces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("face_thumbnails")
