"""API keys, stored as hashes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    # A server started on revision 0001 may have added the table itself (Database.create_tables).
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table("api_keys"):
        return
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(12), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(71), nullable=False),
        sa.Column("chart_ids", sa.JSON(), nullable=True),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("api_keys")
