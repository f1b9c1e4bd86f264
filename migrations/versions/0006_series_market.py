"""A series' market calendar and value aggregation rule (timeframes).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A server started on an older revision may have added the columns itself
    # (Database.create_tables).
    present: set[str] = set()
    if not context.is_offline_mode():
        present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("series")}
    if "market" not in present:
        op.add_column("series", sa.Column("market", sa.JSON(), nullable=True))
    if "aggregation" not in present:
        op.add_column("series", sa.Column("aggregation", sa.String(8), nullable=True))


def downgrade() -> None:
    op.drop_column("series", "aggregation")
    op.drop_column("series", "market")
