"""face libraries: a faceset's capacity and field schema, a member face's external id and fields

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:05:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("facesets") as table:
        table.add_column(sa.Column("capacity", sa.Integer(), nullable=True))
        table.add_column(sa.Column("field_types", sa.JSON(), nullable=True))
    with op.batch_alter_table("faceset_faces") as table:
        table.add_column(sa.Column("external_image_id", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("external_fields", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("faceset_faces") as table:
        table.drop_column("external_fields")
        table.drop_column("external_image_id")
    with op.batch_alter_table("facesets") as table:
        table.drop_column("field_types")
        table.drop_column("capacity")
