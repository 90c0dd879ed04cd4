"""Downtime-free model switches: a pending model and its re-embed job per catalogue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 00:00:00

``catalogue_models.pending_model_id`` (nullable, ``models.id``, set to NULL when that model
is deleted) and ``catalogue_models.pending_job_id`` (nullable, the re-embed job's id). Both
are NULL unless a switch is in progress. Batch mode, so that SQLite (which cannot add a
foreign key to an existing table) recreates the table; PostgreSQL gets plain ALTERs.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the ORM's id type (a migration must not import the live models).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FK_NAME = "fk_catalogue_models_pending_model_id_models"


def upgrade() -> None:
    with op.batch_alter_table("catalogue_models") as batch:
        batch.add_column(sa.Column("pending_model_id", ID, nullable=True))
        batch.add_column(sa.Column("pending_job_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            FK_NAME, "models", ["pending_model_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("catalogue_models") as batch:
        batch.drop_constraint(FK_NAME, type_="foreignkey")
        batch.drop_column("pending_job_id")
        batch.drop_column("pending_model_id")
