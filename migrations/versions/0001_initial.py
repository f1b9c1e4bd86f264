"""Charts, series and points.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def identifier() -> sa.types.TypeEngine[str]:
    return sa.String(128).with_variant(
        mysql.VARCHAR(128, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "charts",
        sa.Column("id", identifier(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("accessed_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **MYSQL,
    )
    op.create_index("ix_charts_accessed_at", "charts", ["accessed_at"])
    op.create_table(
        "series",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("chart_id", identifier(), nullable=False),
        sa.Column("pane_id", sa.SmallInteger(), nullable=False),
        sa.Column("series_id", identifier(), nullable=False),
        sa.Column("series_type", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("point_count", sa.BigInteger(), nullable=False),
        sa.Column("first_time", sa.BigInteger(), nullable=True),
        sa.Column("last_time", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(
            ["chart_id"],
            ["charts.id"],
            name="fk_series_chart_id_charts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "chart_id", "pane_id", "series_id", name="uq_series_chart_id_pane_id_series_id"
        ),
        **MYSQL,
    )
    op.create_table(
        "points",
        sa.Column("series_pk", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("series_pk", "time"),
        sqlite_with_rowid=False,
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("points")
    op.drop_table("series")
    op.drop_index("ix_charts_accessed_at", table_name="charts")
    op.drop_table("charts")
