"""Annotations of charts, and each chart's annotation count and change sequence.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def identifier() -> sa.types.TypeEngine[str]:
    return sa.String(128).with_variant(
        mysql.VARCHAR(128, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    # A server started on an older revision may have added the tables itself
    # (Database.create_tables).
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table("annotations"):
        return
    op.create_table(
        "annotations",
        sa.Column("chart_id", identifier(), nullable=False),
        sa.Column("annotation_id", identifier(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("pane_id", sa.SmallInteger(), nullable=False),
        sa.Column("series_id", identifier(), nullable=True),
        sa.Column("visibility", sa.String(8), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column(
            "body", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False
        ),
        sa.PrimaryKeyConstraint("chart_id", "annotation_id"),
        sa.ForeignKeyConstraint(
            ["chart_id"],
            ["charts.id"],
            name="fk_annotations_chart_id_charts",
            ondelete="CASCADE",
        ),
        **MYSQL,
    )
    op.create_index(
        "ix_annotations_chart_id_end_time_start_time",
        "annotations",
        ["chart_id", "end_time", "start_time"],
    )
    op.create_table(
        "annotation_heads",
        sa.Column("chart_id", identifier(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chart_id"),
        sa.ForeignKeyConstraint(
            ["chart_id"],
            ["charts.id"],
            name="fk_annotation_heads_chart_id_charts",
            ondelete="CASCADE",
        ),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("annotation_heads")
    op.drop_index("ix_annotations_chart_id_end_time_start_time", table_name="annotations")
    op.drop_table("annotations")
