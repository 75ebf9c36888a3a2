"""Reports: which scheduled times the scheduler owes them and the latest it evaluated; report
runs: an index to find MISSED rows whose owner has not been told.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Left empty on existing reports: what the scheduler evaluated before is not known, so missed
    # times are looked for only after a report's next evaluated tick.
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("ticks_expected_from", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_tick_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_report_runs_status_notified", "report_runs", ["status", "notified_owner_at"])


def downgrade() -> None:
    op.drop_index("ix_report_runs_status_notified", table_name="report_runs")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("last_tick_at")
        batch.drop_column("ticks_expected_from")
