"""one credential per dialect: SenseTime secrets move from accounts to credentials

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:15:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("dialect", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("secret_salt", sa.String(length=32), nullable=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dialect", "key_id", name="uq_credentials_dialect_key"),
    )
    op.create_index("ix_credentials_account_id", "credentials", ["account_id"])
    op.execute(
        "INSERT INTO credentials"
        " (account_id, dialect, key_id, secret_salt, secret_hash, created_at)"
        " SELECT id, 'sensetime', api_id, secret_salt, secret_hash, created_at FROM accounts"
    )
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("secret_salt")
        batch.drop_column("secret_hash")


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("secret_salt", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("secret_hash", sa.String(length=64), nullable=True))
    own = (
        " FROM credentials c WHERE c.account_id = accounts.id"
        " AND c.dialect = 'sensetime' AND c.key_id = accounts.api_id)"
    )
    op.execute(
        f"UPDATE accounts SET secret_salt = (SELECT secret_salt{own},"
        f" secret_hash = (SELECT secret_hash{own}"
    )
    op.drop_index("ix_credentials_account_id", table_name="credentials")
    op.drop_table("credentials")
