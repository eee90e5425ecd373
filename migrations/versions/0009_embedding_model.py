"""which recognition model made each face's embedding, and a side slot for another model's

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 13:45:00.000000

Existing faces are tagged with the recognition model of the manifest in force when the migration
runs (FACESRV_MODEL_MANIFEST, else the repository's): the model that made them, provided the
store is upgraded before the manifest is changed (`facesrv serve` upgrades at every start).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# What a face is tagged with when no manifest can be read: never a real model's identity, so
# `facesrv reembed` re-embeds such faces under any manifest.
UNKNOWN_MODEL = "unknown"


def _current_model() -> str:
    try:
        from app.config import get_settings
        from app.vision.manifest import load_manifest

        return load_manifest(get_settings().model_manifest).models["recognition"].identity
    except Exception:  # noqa: BLE001 - a migration must not fail for want of a manifest
        return UNKNOWN_MODEL


def upgrade() -> None:
    with op.batch_alter_table("faces") as table:
        table.add_column(sa.Column("embedding_model", sa.String(length=128), nullable=True))
        table.add_column(sa.Column("alt_embedding", sa.LargeBinary(), nullable=True))
        table.add_column(sa.Column("alt_embedding_model", sa.String(length=128), nullable=True))
    faces = sa.table("faces", sa.column("embedding_model", sa.String))
    op.execute(faces.update().values(embedding_model=_current_model()))
    with op.batch_alter_table("faces") as table:
        table.alter_column("embedding_model", existing_type=sa.String(length=128), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("faces") as table:
        table.drop_column("alt_embedding_model")
        table.drop_column("alt_embedding")
        table.drop_column("embedding_model")
