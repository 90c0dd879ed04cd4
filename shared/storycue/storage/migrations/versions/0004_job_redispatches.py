"""The job supervisor: how many times a stalled job's work was sent again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:00:00

``jobs.redispatches`` (integer, 0 by default): the supervisor
(:mod:`storycue.runtime.supervisor`) re-dispatches the missing work of a job that made no
progress for ``queue.stall_timeout_s`` and gives up (``failed``, code ``job_stalled``)
after ``queue.task_max_retries`` re-dispatches. Batch mode, as in 0003.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("redispatches", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("redispatches")
