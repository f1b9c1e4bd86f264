"""Saved templates have unique names: one row per owner, kind, tool and name.

Two saves of one new template name that raced could both insert; ``template_name`` (the name of a
template, NULL for chart layouts) is unique per owner, kind and tool, and a save is an upsert. Of
duplicates already stored, the newest is kept.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_saved_layouts_client_user_id_kind_tool_template_name"


def upgrade() -> None:
    # A server started on an older revision may have made the change itself
    # (Database.create_tables).
    if not context.is_offline_mode():
        columns = sa.inspect(op.get_bind()).get_columns("saved_layouts")
        if any(column["name"] == "template_name" for column in columns):
            return
    op.add_column("saved_layouts", sa.Column("template_name", sa.String(128), nullable=True))
    # MySQL cannot read the table a DELETE changes but through a derived table.
    op.execute(
        "DELETE FROM saved_layouts WHERE kind <> 'chart' AND id NOT IN ("
        "SELECT id FROM (SELECT MAX(id) AS id FROM saved_layouts WHERE kind <> 'chart' "
        "GROUP BY client, user_id, kind, tool, name) AS newest)"
    )
    op.execute("UPDATE saved_layouts SET template_name = name WHERE kind <> 'chart'")
    op.create_index(
        INDEX,
        "saved_layouts",
        ["client", "user_id", "kind", "tool", "template_name"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="saved_layouts")
    with op.batch_alter_table("saved_layouts") as batch:
        batch.drop_column("template_name")
