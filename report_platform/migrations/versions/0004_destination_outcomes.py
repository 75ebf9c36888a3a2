"""Report runs: each destination's outcome; reports: the count of consecutive failed runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rows need values: a run recorded before has no per-destination outcomes, a report
    # no failures counted yet.
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("report_runs") as batch:
        batch.add_column(sa.Column("destinations", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("report_runs") as batch:
        batch.drop_column("destinations")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("consecutive_failures")
