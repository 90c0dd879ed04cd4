"""SQLAlchemy 2 ORM models of the metadata database.

These classes are internal to :mod:`storycue.storage`: public methods of
:class:`~storycue.storage.metadata.MetadataStore` return frozen dataclasses instead.
Every schema change needs a new Alembic revision under ``storage/migrations/versions``
(the test-suite checks that the migrated schema equals this metadata).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Integer primary keys: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
IdType = BigInteger().with_variant(Integer(), "sqlite")
#: JSON documents: JSONB on PostgreSQL, JSON text elsewhere.
JsonType = JSON().with_variant(JSONB(), "postgresql")

SHA256_HEX_LEN = 64


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every storycue table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _created() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


def _updated() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True),
        nullable=False,
        default=utcnow,
        onupdate=utcnow,
        server_default=func.now(),
    )


class CatalogueRow(Base):
    __tablename__ = "catalogues"
    __table_args__ = (
        UniqueConstraint("tenant", "name"),
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("length(tenant) > 0", name="tenant_not_empty"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100), nullable=False, server_default="default")
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = _created()

    tracks: Mapped[list[TrackRow]] = relationship(
        back_populates="catalogue", cascade="all, delete-orphan", passive_deletes=True
    )


class TrackRow(Base):
    __tablename__ = "tracks"
    __table_args__ = (
        UniqueConstraint("catalogue_id", "content_hash"),
        CheckConstraint(f"length(content_hash) = {SHA256_HEX_LEN}", name="content_hash_sha256"),
        CheckConstraint("duration_s >= 0", name="duration_non_negative"),
        CheckConstraint("sample_rate > 0", name="sample_rate_positive"),
        CheckConstraint("channels > 0", name="channels_positive"),
        Index(None, "catalogue_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    catalogue_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("catalogues.id", ondelete="CASCADE"), nullable=False
    )
    uri: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str | None] = mapped_column(Text)
    artist: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    sample_rate: Mapped[int] = mapped_column(Integer, nullable=False)
    channels: Mapped[int] = mapped_column(Integer, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LEN), nullable=False)
    tags: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    catalogue: Mapped[CatalogueRow] = relationship(back_populates="tracks")


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint("dim > 0", name="dim_positive"),
        CheckConstraint("distance IN ('cosine', 'euclid', 'dot')", name="distance_known"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    version: Mapped[str] = mapped_column(String(40), nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    family: Mapped[str] = mapped_column(String(100), nullable=False)
    distance: Mapped[str] = mapped_column(String(10), nullable=False)
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX_LEN))
    extra: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JsonType, nullable=False, default=dict
    )
    created_at: Mapped[datetime] = _created()


class EmbeddingRow(Base):
    """Provenance of one vector: which track, which model, where it is stored."""

    __tablename__ = "embeddings"
    __table_args__ = (
        UniqueConstraint("track_id", "model_id"),
        UniqueConstraint("collection", "point_id"),
        Index(None, "model_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    track_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("tracks.id", ondelete="CASCADE"), nullable=False
    )
    model_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("models.id", ondelete="CASCADE"), nullable=False
    )
    collection: Mapped[str] = mapped_column(String(255), nullable=False)
    point_id: Mapped[str] = mapped_column(String(36), nullable=False)
    backbone_name: Mapped[str | None] = mapped_column(String(100))
    backbone_version: Mapped[str | None] = mapped_column(String(40))
    text_encoder: Mapped[str | None] = mapped_column(String(200))
    audio_encoder: Mapped[str | None] = mapped_column(String(200))
    valence: Mapped[float | None] = mapped_column(Float)
    arousal: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class IngestFailureRow(Base):
    """A file that could not be ingested, with the reason."""

    __tablename__ = "ingest_failures"
    __table_args__ = (Index(None, "catalogue_id", "created_at"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    catalogue_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("catalogues.id", ondelete="CASCADE"), nullable=False
    )
    uri: Mapped[str] = mapped_column(Text, nullable=False)
    content_hash: Mapped[str | None] = mapped_column(String(SHA256_HEX_LEN))
    error_code: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()


# ---- gateway and jobs (revision 0002) ----------------------------------------------------------
#: Kinds of asynchronous job.
JOB_KINDS = ("match", "ingest", "evaluate", "train")
#: States of a job (see :mod:`storycue.storage.jobs` for the legal transitions).
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
#: States of a track registered by URI.
SOURCE_STATES = ("pending", "ingested", "failed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ApiKeyRow(Base):
    """An API key of a tenant: only its sha256 is stored, never the key."""

    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("key_hash"),
        CheckConstraint("length(tenant) > 0", name="tenant_not_empty"),
        CheckConstraint(f"length(key_hash) = {SHA256_HEX_LEN}", name="key_hash_sha256"),
        Index(None, "tenant"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    key_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LEN), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobRow(Base):
    """An asynchronous job (match, ingest, evaluate, train) of a tenant."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("length(tenant) > 0", name="tenant_not_empty"),
        CheckConstraint(_in("kind", JOB_KINDS), name="kind_known"),
        CheckConstraint(_in("state", JOB_STATES), name="state_known"),
        CheckConstraint("progress_done >= 0", name="progress_done_non_negative"),
        CheckConstraint("progress_total >= 0", name="progress_total_non_negative"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index(None, "tenant", "created_at"),
        Index(None, "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False, server_default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    catalogue_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("catalogues.id", ondelete="SET NULL")
    )
    progress_done: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    progress_total: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    model_name: Mapped[str | None] = mapped_column(String(100))
    model_version: Mapped[str | None] = mapped_column(String(40))
    model_dim: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    #: Times the supervisor sent a stalled job's missing work again (migration 0004).
    redispatches: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _updated()


class JobItemRow(Base):
    """One input of a job: a story of a bulk match job, a registered track of an ingest job.

    Workers read their inputs here (by job and item index), never from the broker.
    """

    __tablename__ = "job_items"
    __table_args__ = (UniqueConstraint("job_id", "item_index"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    item_index: Mapped[int] = mapped_column(Integer, nullable=False)
    item_id: Mapped[str] = mapped_column(String(200), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)


class JobResultRow(Base):
    """The result of one item of a job; one row per (job, item), rewritten on re-runs."""

    __tablename__ = "job_results"
    __table_args__ = (UniqueConstraint("job_id", "item_index"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    item_index: Mapped[int] = mapped_column(Integer, nullable=False)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=true())
    result: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False, default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class CatalogueModelRow(Base):
    """The active emotion model of a catalogue (absent: the configured default model).

    ``pending_model_id`` / ``pending_job_id``: a model switch in progress (migration 0003):
    the re-embed job embedding the catalogue under the pending model. Searches keep using
    ``model_id`` until that job succeeds and the pending model is promoted.
    """

    __tablename__ = "catalogue_models"

    catalogue_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("catalogues.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("models.id", ondelete="CASCADE"), nullable=False
    )
    pending_model_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("models.id", ondelete="SET NULL"), nullable=True
    )
    pending_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    updated_at: Mapped[datetime] = _updated()


class TrackSourceRow(Base):
    """A track registered by URI (local path, s3:// or http(s)://), before and after ingest."""

    __tablename__ = "track_sources"
    __table_args__ = (
        UniqueConstraint("catalogue_id", "uri_hash"),
        CheckConstraint(_in("state", SOURCE_STATES), name="state_known"),
        CheckConstraint(f"length(uri_hash) = {SHA256_HEX_LEN}", name="uri_hash_sha256"),
        Index(None, "catalogue_id", "id"),
        Index(None, "track_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    catalogue_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("catalogues.id", ondelete="CASCADE"), nullable=False
    )
    uri: Mapped[str] = mapped_column(Text, nullable=False)
    uri_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LEN), nullable=False)
    title: Mapped[str | None] = mapped_column(Text)
    artist: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    state: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    track_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("tracks.id", ondelete="SET NULL")
    )
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
