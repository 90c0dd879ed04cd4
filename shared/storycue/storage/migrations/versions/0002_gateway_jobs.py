"""Gateway and jobs: api_keys, jobs, job_items, job_results, catalogue_models, track_sources.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01 00:00:00

Written against :mod:`storycue.storage.orm` and checked by the storage tests (the migrated
schema equals the ORM metadata on SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the ORM's column types (a migration must not import the live models).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
JOB_KINDS = "kind IN ('match', 'ingest', 'evaluate', 'train')"
JOB_STATES = "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
SOURCE_STATES = "state IN ('pending', 'ingested', 'failed')"


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, autoincrement=True, nullable=False)


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        _id(),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        _ts("created_at"),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("length(key_hash) = 64", name=op.f("ck_api_keys_key_hash_sha256")),
        sa.CheckConstraint("length(tenant) > 0", name=op.f("ck_api_keys_tenant_not_empty")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_tenant"), "api_keys", ["tenant"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), server_default="queued", nullable=False),
        sa.Column("params", JSON_DOC, nullable=False),
        sa.Column("catalogue_id", ID, nullable=True),
        sa.Column("progress_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("progress_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=True),
        sa.Column("model_version", sa.String(length=40), nullable=True),
        sa.Column("model_dim", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _ts("created_at"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        _ts("updated_at"),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_jobs_attempts_non_negative")),
        sa.CheckConstraint(JOB_KINDS, name=op.f("ck_jobs_kind_known")),
        sa.CheckConstraint("progress_done >= 0", name=op.f("ck_jobs_progress_done_non_negative")),
        sa.CheckConstraint("progress_total >= 0", name=op.f("ck_jobs_progress_total_non_negative")),
        sa.CheckConstraint(JOB_STATES, name=op.f("ck_jobs_state_known")),
        sa.CheckConstraint("length(tenant) > 0", name=op.f("ck_jobs_tenant_not_empty")),
        sa.ForeignKeyConstraint(
            ["catalogue_id"],
            ["catalogues.id"],
            name=op.f("fk_jobs_catalogue_id_catalogues"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_tenant_created_at"), "jobs", ["tenant", "created_at"])
    op.create_index(op.f("ix_jobs_state"), "jobs", ["state"])
    op.create_table(
        "job_items",
        _id(),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_items_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_items")),
        sa.UniqueConstraint("job_id", "item_index", name=op.f("uq_job_items_job_id_item_index")),
    )
    op.create_table(
        "job_results",
        _id(),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("result", JSON_DOC, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_results_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_results")),
        sa.UniqueConstraint("job_id", "item_index", name=op.f("uq_job_results_job_id_item_index")),
    )
    op.create_table(
        "catalogue_models",
        sa.Column("catalogue_id", ID, nullable=False),
        sa.Column("model_id", ID, nullable=False),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["catalogue_id"],
            ["catalogues.id"],
            name=op.f("fk_catalogue_models_catalogue_id_catalogues"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_catalogue_models_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("catalogue_id", name=op.f("pk_catalogue_models")),
    )
    op.create_table(
        "track_sources",
        _id(),
        sa.Column("catalogue_id", ID, nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("uri_hash", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("artist", sa.Text(), nullable=True),
        sa.Column("tags", JSON_DOC, nullable=False),
        sa.Column("state", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("track_id", ID, nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(SOURCE_STATES, name=op.f("ck_track_sources_state_known")),
        sa.CheckConstraint("length(uri_hash) = 64", name=op.f("ck_track_sources_uri_hash_sha256")),
        sa.ForeignKeyConstraint(
            ["catalogue_id"],
            ["catalogues.id"],
            name=op.f("fk_track_sources_catalogue_id_catalogues"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["track_id"],
            ["tracks.id"],
            name=op.f("fk_track_sources_track_id_tracks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_track_sources")),
        sa.UniqueConstraint(
            "catalogue_id", "uri_hash", name=op.f("uq_track_sources_catalogue_id_uri_hash")
        ),
    )
    op.create_index(
        op.f("ix_track_sources_catalogue_id_id"), "track_sources", ["catalogue_id", "id"]
    )
    op.create_index(op.f("ix_track_sources_track_id"), "track_sources", ["track_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_track_sources_track_id"), table_name="track_sources")
    op.drop_index(op.f("ix_track_sources_catalogue_id_id"), table_name="track_sources")
    op.drop_table("track_sources")
    op.drop_table("catalogue_models")
    op.drop_table("job_results")
    op.drop_table("job_items")
    op.drop_index(op.f("ix_jobs_state"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_tenant_created_at"), table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_api_keys_tenant"), table_name="api_keys")
    op.drop_table("api_keys")
