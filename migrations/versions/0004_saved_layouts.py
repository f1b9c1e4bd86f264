"""Layouts and templates of the TradingView save/load API.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    # A server started on an older revision may have added the table itself
    # (Database.create_tables).
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table("saved_layouts"):
        return
    op.create_table(
        "saved_layouts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(128), nullable=False),
        sa.Column("resolution", sa.String(16), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column(
            "content",
            sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        **MYSQL,
    )
    op.create_index(
        "ix_saved_layouts_client_user_id_kind_tool_name",
        "saved_layouts",
        ["client", "user_id", "kind", "tool", "name"],
    )


def downgrade() -> None:
    op.drop_index("ix_saved_layouts_client_user_id_kind_tool_name", table_name="saved_layouts")
    op.drop_table("saved_layouts")
