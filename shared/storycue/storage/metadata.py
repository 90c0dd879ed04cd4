"""The metadata database: catalogues, tracks, models, embedding provenance, failures.

:class:`MetadataStore` wraps one SQLAlchemy engine (SQLite file or PostgreSQL) and hands
out immutable records (:mod:`storycue.storage.records`), never live ORM objects. Every
public method runs in its own short transaction. Creating methods are idempotent and
race-safe: when two writers insert the same natural key at once, the loser gets the
winner's row instead of an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Self, TypeVar, cast

from sqlalchemy import Engine, delete, exists, func, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from storycue.errors import (
    ConfigurationError,
    InvalidInputError,
    ModelMismatchError,
    NotFoundError,
)
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.storage import migrate as _migrate
from storycue.storage.db import create_db_engine
from storycue.storage.orm import (
    CatalogueRow,
    EmbeddingRow,
    IngestFailureRow,
    ModelRow,
    TrackRow,
)
from storycue.storage.records import (
    DISTANCES,
    Catalogue,
    Distance,
    EmbeddingRecord,
    IngestFailure,
    ModelRecord,
    Track,
    TrackCreate,
    normalize_sha256,
)
from storycue.storage.vectors import point_id_for

log = get_logger(__name__)

T = TypeVar("T")

#: Largest page :meth:`MetadataStore.list_tracks` and friends return at once.
MAX_PAGE = 10_000
_IN_CHUNK = 500


def _aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes; every value we store is UTC.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _catalogue(row: CatalogueRow) -> Catalogue:
    return Catalogue(id=row.id, tenant=row.tenant, name=row.name, created_at=_aware(row.created_at))


def _track(row: TrackRow) -> Track:
    return Track(
        id=row.id,
        catalogue_id=row.catalogue_id,
        uri=row.uri,
        title=row.title,
        artist=row.artist,
        duration_s=row.duration_s,
        sample_rate=row.sample_rate,
        channels=row.channels,
        content_hash=row.content_hash,
        tags=tuple(row.tags or ()),
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


def _model(row: ModelRow) -> ModelRecord:
    return ModelRecord(
        id=row.id,
        name=row.name,
        version=row.version,
        dim=row.dim,
        family=row.family,
        distance=cast(Distance, row.distance),
        checkpoint_sha256=row.checkpoint_sha256,
        metadata=dict(row.extra or {}),
        created_at=_aware(row.created_at),
    )


def _embedding(row: EmbeddingRow) -> EmbeddingRecord:
    return EmbeddingRecord(
        id=row.id,
        track_id=row.track_id,
        model_id=row.model_id,
        collection=row.collection,
        point_id=row.point_id,
        backbone_name=row.backbone_name,
        backbone_version=row.backbone_version,
        text_encoder=row.text_encoder,
        audio_encoder=row.audio_encoder,
        valence=row.valence,
        arousal=row.arousal,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


def _failure(row: IngestFailureRow) -> IngestFailure:
    return IngestFailure(
        id=row.id,
        catalogue_id=row.catalogue_id,
        uri=row.uri,
        content_hash=row.content_hash,
        error_code=row.error_code,
        message=row.message,
        created_at=_aware(row.created_at),
    )


def _check_page(limit: int | None, offset: int) -> None:
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if offset < 0:
        raise InvalidInputError(f"offset must be >= 0, got {offset}")


def _check_name(value: str, what: str, max_len: int) -> str:
    if not value or not value.strip():
        raise InvalidInputError(f"{what} must not be empty", detail={"field": what})
    if len(value) > max_len:
        raise InvalidInputError(
            f"{what} is longer than {max_len} characters", detail={"field": what}
        )
    return value


def _check_finite(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        raise InvalidInputError(f"{what} must be finite, got {value!r}", detail={"field": what})
    return v


class MetadataStore:
    """Metadata of catalogues, tracks, models and embeddings in a SQL database.

    ``url_or_engine`` is a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://...``;
    PostgreSQL always uses psycopg 3) or an existing :class:`~sqlalchemy.Engine`, which
    the store then does not dispose of on :meth:`close`. Call :meth:`migrate` once before
    use (:func:`storycue.storage.open_metadata_store` does it for embedded SQLite).
    Thread-safe: each call uses its own session.
    """

    def __init__(self, url_or_engine: str | URL | Engine, *, echo: bool = False) -> None:
        if isinstance(url_or_engine, Engine):
            self._engine = url_or_engine
            self._owns_engine = False
        else:
            self._engine = create_db_engine(url_or_engine, echo=echo)
            self._owns_engine = True
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The underlying engine."""
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def migrate(self, revision: str = "head") -> None:
        """Apply the packaged Alembic migrations up to ``revision``."""
        _migrate.upgrade(self._engine, revision)

    def downgrade(self, revision: str) -> None:
        """Migrate down to ``revision`` (``"base"`` drops every storycue table)."""
        _migrate.downgrade(self._engine, revision)

    def current_revision(self) -> str | None:
        """The database's Alembic revision (``None`` when never migrated)."""
        return _migrate.current_revision(self._engine)

    def is_up_to_date(self) -> bool:
        """Whether the database is at the newest shipped revision."""
        return self.current_revision() == _migrate.head_revision()

    def close(self) -> None:
        """Dispose of the engine's connections (when the store created the engine)."""
        if not self._closed and self._owns_engine:
            self._engine.dispose()
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except (OperationalError, ProgrammingError) as exc:
            text = str(exc.orig).lower()
            if "no such table" in text or ("relation" in text and "does not exist" in text):
                raise ConfigurationError(
                    f"the metadata database at {self._engine.url.render_as_string()} has no "
                    "storycue schema: run MetadataStore.migrate() (or `alembic upgrade head`)",
                ) from exc
            raise

    def _insert_or_get(
        self, insert: Callable[[Session], T], lookup: Callable[[Session], T | None]
    ) -> tuple[T, bool]:
        """Run ``insert``; if a concurrent writer won the unique key, return its row."""
        with self._session() as s:
            found = lookup(s)
            if found is not None:
                return found, False
        try:
            with self._session() as s:
                return insert(s), True
        except IntegrityError:
            with self._session() as s:
                found = lookup(s)
            if found is None:
                raise
            return found, False

    # ---- catalogues ------------------------------------------------------------------
    def get_or_create_catalogue(self, name: str, tenant: str = "default") -> Catalogue:
        """The catalogue ``name`` of ``tenant``, created when missing."""
        _check_name(name, "catalogue name", 200)
        _check_name(tenant, "tenant", 100)

        def lookup(s: Session) -> Catalogue | None:
            row = s.scalar(
                select(CatalogueRow).where(CatalogueRow.tenant == tenant, CatalogueRow.name == name)
            )
            return None if row is None else _catalogue(row)

        def insert(s: Session) -> Catalogue:
            row = CatalogueRow(tenant=tenant, name=name)
            s.add(row)
            s.flush()
            return _catalogue(row)

        cat, created = self._insert_or_get(insert, lookup)
        if created:
            log.info("catalogue created", catalogue_id=cat.id, tenant=tenant, name=name)
        return cat

    def get_catalogue(self, name: str, tenant: str = "default") -> Catalogue | None:
        """The catalogue ``name`` of ``tenant``, or ``None``."""
        with self._session() as s:
            row = s.scalar(
                select(CatalogueRow).where(CatalogueRow.tenant == tenant, CatalogueRow.name == name)
            )
            return None if row is None else _catalogue(row)

    def get_catalogue_by_id(self, catalogue_id: int) -> Catalogue | None:
        """The catalogue with this id, or ``None``."""
        with self._session() as s:
            row = s.get(CatalogueRow, catalogue_id)
            return None if row is None else _catalogue(row)

    def list_catalogues(self, tenant: str | None = "default") -> list[Catalogue]:
        """Catalogues of ``tenant`` (every tenant's when ``None``), by tenant and name."""
        stmt = select(CatalogueRow).order_by(CatalogueRow.tenant, CatalogueRow.name)
        if tenant is not None:
            stmt = stmt.where(CatalogueRow.tenant == tenant)
        with self._session() as s:
            return [_catalogue(r) for r in s.scalars(stmt)]

    def delete_catalogue(self, catalogue_id: int) -> bool:
        """Delete a catalogue with its tracks, their provenance and its failures.

        Vectors in the vector store are not touched: collect
        :meth:`list_embeddings` first to delete them. Returns whether it existed.
        """
        with self._session() as s:
            result = s.execute(delete(CatalogueRow).where(CatalogueRow.id == catalogue_id))
            deleted = bool(getattr(result, "rowcount", 0))
        if deleted:
            log.info("catalogue deleted", catalogue_id=catalogue_id)
        return deleted

    # ---- tracks ----------------------------------------------------------------------
    def find_track_by_hash(self, catalogue_id: int, content_hash: str) -> Track | None:
        """The track of ``catalogue_id`` whose file has this sha256, or ``None``."""
        sha = normalize_sha256(content_hash)
        with self._session() as s:
            row = s.scalar(
                select(TrackRow).where(
                    TrackRow.catalogue_id == catalogue_id, TrackRow.content_hash == sha
                )
            )
            return None if row is None else _track(row)

    def add_track(self, track: TrackCreate) -> tuple[Track, bool]:
        """Register a track; returns ``(track, created)``.

        Idempotent by content: when the catalogue already holds a file with the same
        sha256 (whatever its URI), the existing track is returned with ``created=False``
        and left unchanged. Raises :class:`NotFoundError` for an unknown catalogue.
        """

        def lookup(s: Session) -> Track | None:
            row = s.scalar(
                select(TrackRow).where(
                    TrackRow.catalogue_id == track.catalogue_id,
                    TrackRow.content_hash == track.content_hash,
                )
            )
            return None if row is None else _track(row)

        def insert(s: Session) -> Track:
            if s.get(CatalogueRow, track.catalogue_id) is None:
                raise NotFoundError(
                    f"catalogue {track.catalogue_id} does not exist",
                    detail={"catalogue_id": track.catalogue_id},
                )
            row = TrackRow(
                catalogue_id=track.catalogue_id,
                uri=track.uri,
                title=track.title,
                artist=track.artist,
                duration_s=float(track.duration_s),
                sample_rate=track.sample_rate,
                channels=track.channels,
                content_hash=track.content_hash,
                tags=list(track.tags),
            )
            s.add(row)
            s.flush()
            return _track(row)

        result, created = self._insert_or_get(insert, lookup)
        if created:
            log.debug("track added", track_id=result.id, catalogue_id=result.catalogue_id)
        return result, created

    def get_track(self, track_id: int) -> Track | None:
        """The track with this id, or ``None``."""
        with self._session() as s:
            row = s.get(TrackRow, track_id)
            return None if row is None else _track(row)

    def get_tracks(self, track_ids: Sequence[int]) -> list[Track]:
        """Tracks in the order of ``track_ids``; unknown ids are skipped."""
        wanted = list(dict.fromkeys(track_ids))
        found: dict[int, Track] = {}
        with self._session() as s:
            for i in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[i : i + _IN_CHUNK]
                for row in s.scalars(select(TrackRow).where(TrackRow.id.in_(chunk))):
                    found[row.id] = _track(row)
        return [found[i] for i in track_ids if i in found]

    def list_tracks(self, catalogue_id: int, limit: int = 100, offset: int = 0) -> list[Track]:
        """A page of a catalogue's tracks, oldest first (by id)."""
        _check_page(limit, offset)
        stmt = (
            select(TrackRow)
            .where(TrackRow.catalogue_id == catalogue_id)
            .order_by(TrackRow.id)
            .limit(limit)
            .offset(offset)
        )
        with self._session() as s:
            return [_track(r) for r in s.scalars(stmt)]

    def count_tracks(self, catalogue_id: int | None = None) -> int:
        """Number of tracks in one catalogue, or in all of them."""
        stmt = select(func.count()).select_from(TrackRow)
        if catalogue_id is not None:
            stmt = stmt.where(TrackRow.catalogue_id == catalogue_id)
        with self._session() as s:
            return int(s.scalar(stmt) or 0)

    def delete_track(self, track_id: int) -> bool:
        """Delete a track and (by ON DELETE CASCADE) its embedding provenance.

        The vectors themselves are not touched: read :meth:`list_embeddings` first to
        delete them from the vector store. Returns whether the track existed.
        """
        with self._session() as s:
            result = s.execute(delete(TrackRow).where(TrackRow.id == track_id))
            return bool(getattr(result, "rowcount", 0))

    # ---- models ----------------------------------------------------------------------
    def register_model(
        self,
        identity: ModelIdentity,
        family: str,
        distance: Distance,
        checkpoint_sha256: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Register a model, or return the registered one if it agrees.

        Idempotent per ``(name, version)``. Raises :class:`ModelMismatchError` when the
        existing record has another dimension, family, distance or checkpoint hash (a
        missing hash on either side is not a conflict; a first hash is recorded).
        ``metadata`` is stored on first registration only.
        """
        if distance not in DISTANCES:
            raise InvalidInputError(
                f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}"
            )
        _check_name(family, "family", 100)
        sha = (
            None
            if checkpoint_sha256 is None
            else normalize_sha256(checkpoint_sha256, "checkpoint_sha256")
        )
        extra = dict(metadata or {})

        def lookup(s: Session) -> ModelRow | None:
            return s.scalar(
                select(ModelRow).where(
                    ModelRow.name == identity.name, ModelRow.version == identity.version
                )
            )

        def reconcile(s: Session, row: ModelRow) -> ModelRecord:
            diffs: dict[str, tuple[object, object]] = {}
            if row.dim != identity.dim:
                diffs["dim"] = (row.dim, identity.dim)
            if row.family != family:
                diffs["family"] = (row.family, family)
            if row.distance != distance:
                diffs["distance"] = (row.distance, distance)
            if sha is not None and row.checkpoint_sha256 not in (None, sha):
                diffs["checkpoint_sha256"] = (row.checkpoint_sha256, sha)
            if diffs:
                what = ", ".join(f"{k} {old!r} != {new!r}" for k, (old, new) in diffs.items())
                raise ModelMismatchError(
                    f"model {identity.name}@{identity.version} is already registered "
                    f"differently: {what}; register a new version instead",
                    detail={k: {"registered": o, "given": n} for k, (o, n) in diffs.items()},
                )
            if sha is not None and row.checkpoint_sha256 is None:
                row.checkpoint_sha256 = sha
                s.flush()
            return _model(row)

        with self._session() as s:
            row = lookup(s)
            if row is not None:
                return reconcile(s, row)
        try:
            with self._session() as s:
                row = ModelRow(
                    name=identity.name,
                    version=identity.version,
                    dim=identity.dim,
                    family=family,
                    distance=distance,
                    checkpoint_sha256=sha,
                    extra=extra,
                )
                s.add(row)
                s.flush()
                record = _model(row)
            log.info("model registered", model=identity.key, model_id=record.id)
            return record
        except IntegrityError:
            with self._session() as s:
                row = lookup(s)
                if row is None:
                    raise
                return reconcile(s, row)

    def get_model(self, name: str, version: str) -> ModelRecord | None:
        """The registered model ``name@version``, or ``None``."""
        with self._session() as s:
            row = s.scalar(
                select(ModelRow).where(ModelRow.name == name, ModelRow.version == version)
            )
            return None if row is None else _model(row)

    def get_model_by_id(self, model_id: int) -> ModelRecord | None:
        """The registered model with this id, or ``None``."""
        with self._session() as s:
            row = s.get(ModelRow, model_id)
            return None if row is None else _model(row)

    def list_models(self) -> list[ModelRecord]:
        """Every registered model, by name and version."""
        with self._session() as s:
            return [
                _model(r)
                for r in s.scalars(select(ModelRow).order_by(ModelRow.name, ModelRow.version))
            ]

    # ---- embedding provenance --------------------------------------------------------
    def record_embedding(
        self,
        track_id: int,
        model_id: int,
        *,
        point_id: str | None = None,
        collection: str | None = None,
        backbone_name: str | None = None,
        backbone_version: str | None = None,
        text_encoder: str | None = None,
        audio_encoder: str | None = None,
        valence: float | None = None,
        arousal: float | None = None,
    ) -> EmbeddingRecord:
        """Record (insert or update) where a track's vector under a model lives.

        ``point_id`` defaults to :func:`~storycue.storage.vectors.point_id_for` of the
        track and ``collection`` to the model identity's collection name. Re-recording
        updates the row in place (one row per track and model). Raises
        :class:`NotFoundError` for an unknown track or model.
        """
        v = _check_finite(valence, "valence")
        a = _check_finite(arousal, "arousal")
        pid = point_id or point_id_for(track_id)

        def upsert(s: Session) -> EmbeddingRecord:
            model = s.get(ModelRow, model_id)
            if model is None:
                raise NotFoundError(
                    f"model {model_id} is not registered", detail={"model_id": model_id}
                )
            if s.get(TrackRow, track_id) is None:
                raise NotFoundError(
                    f"track {track_id} does not exist", detail={"track_id": track_id}
                )
            coll = collection or _model(model).identity.collection_name
            row = s.scalar(
                select(EmbeddingRow).where(
                    EmbeddingRow.track_id == track_id, EmbeddingRow.model_id == model_id
                )
            )
            if row is None:
                row = EmbeddingRow(track_id=track_id, model_id=model_id)
                s.add(row)
            row.collection = coll
            row.point_id = pid
            row.backbone_name = backbone_name
            row.backbone_version = backbone_version
            row.text_encoder = text_encoder
            row.audio_encoder = audio_encoder
            row.valence = v
            row.arousal = a
            s.flush()
            return _embedding(row)

        try:
            with self._session() as s:
                return upsert(s)
        except IntegrityError:
            pass
        # A concurrent writer inserted the same (track, model) first: update its row.
        try:
            with self._session() as s:
                return upsert(s)
        except IntegrityError as exc:
            raise InvalidInputError(
                f"point {pid} of collection {collection!r} is already recorded for "
                "another track or model",
                detail={"point_id": pid},
            ) from exc

    def get_embedding(self, track_id: int, model_id: int) -> EmbeddingRecord | None:
        """Provenance of ``track_id``'s vector under ``model_id``, or ``None``."""
        with self._session() as s:
            row = s.scalar(
                select(EmbeddingRow).where(
                    EmbeddingRow.track_id == track_id, EmbeddingRow.model_id == model_id
                )
            )
            return None if row is None else _embedding(row)

    def list_embeddings(
        self, *, track_id: int | None = None, model_id: int | None = None
    ) -> list[EmbeddingRecord]:
        """Provenance records, optionally of one track and/or one model, by id."""
        stmt = select(EmbeddingRow).order_by(EmbeddingRow.id)
        if track_id is not None:
            stmt = stmt.where(EmbeddingRow.track_id == track_id)
        if model_id is not None:
            stmt = stmt.where(EmbeddingRow.model_id == model_id)
        with self._session() as s:
            return [_embedding(r) for r in s.scalars(stmt)]

    def mood_points(
        self, catalogue_id: int, model_id: int, *, limit: int
    ) -> tuple[int, list[tuple[int, str | None, str | None, float, float]]]:
        """``(total, points)``: the tracks of a catalogue that have a valence-arousal
        reading under ``model_id``, as ``(track id, title, artist, valence, arousal)``.
        Over ``limit`` tracks, an evenly spaced sample by track id (every k-th), so a map of
        a large catalogue stays the same from one call to the next."""
        _check_page(limit, 0)
        where = (
            TrackRow.catalogue_id == catalogue_id,
            EmbeddingRow.track_id == TrackRow.id,
            EmbeddingRow.model_id == model_id,
            EmbeddingRow.valence.is_not(None),
            EmbeddingRow.arousal.is_not(None),
        )
        with self._session() as s:
            total = int(
                s.scalar(select(func.count()).select_from(TrackRow, EmbeddingRow).where(*where))
                or 0
            )
            stride = max(1, math.ceil(total / limit)) if limit else 1
            # The sample is taken in the database (row number modulo the stride), so a map
            # of a 100k-track catalogue reads 2,000 rows, not 100k.
            numbered = (
                select(TrackRow.id.label("track_id"), TrackRow.title, TrackRow.artist,
                       EmbeddingRow.valence, EmbeddingRow.arousal,
                       func.row_number().over(order_by=TrackRow.id).label("rn"))
                .where(*where)
                .subquery()
            )  # fmt: skip
            stmt = (
                select(numbered.c.track_id, numbered.c.title, numbered.c.artist,
                       numbered.c.valence, numbered.c.arousal)
                .where((numbered.c.rn - 1) % stride == 0)
                .order_by(numbered.c.track_id)
                .limit(limit)
            )  # fmt: skip
            rows = [
                (int(r[0]), r[1], r[2], float(r[3] or 0.0), float(r[4] or 0.0))
                for r in s.execute(stmt)
            ]
        return total, rows

    def tracks_missing_embedding(
        self, catalogue_id: int, model_id: int, limit: int | None = None
    ) -> list[Track]:
        """Tracks of a catalogue that have no recorded vector under ``model_id``, by id."""
        _check_page(limit, 0)
        has_vector = exists().where(
            EmbeddingRow.track_id == TrackRow.id, EmbeddingRow.model_id == model_id
        )
        stmt = (
            select(TrackRow)
            .where(TrackRow.catalogue_id == catalogue_id, ~has_vector)
            .order_by(TrackRow.id)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._session() as s:
            return [_track(r) for r in s.scalars(stmt)]

    # ---- ingest failures -------------------------------------------------------------
    def record_failure(
        self,
        catalogue_id: int,
        uri: str,
        error_code: str,
        message: str,
        content_hash: str | None = None,
    ) -> IngestFailure:
        """Record that ``uri`` could not be ingested into a catalogue, and why.

        ``error_code`` is typically a :class:`~storycue.errors.StorycueError` ``code``.
        Raises :class:`NotFoundError` for an unknown catalogue.
        """
        _check_name(uri, "uri", 1_000_000)
        _check_name(error_code, "error_code", 64)
        sha = None if content_hash is None else normalize_sha256(content_hash)
        with self._session() as s:
            if s.get(CatalogueRow, catalogue_id) is None:
                raise NotFoundError(
                    f"catalogue {catalogue_id} does not exist",
                    detail={"catalogue_id": catalogue_id},
                )
            row = IngestFailureRow(
                catalogue_id=catalogue_id,
                uri=uri,
                content_hash=sha,
                error_code=error_code,
                message=message,
            )
            s.add(row)
            s.flush()
            record = _failure(row)
        log.info("ingest failure recorded", catalogue_id=catalogue_id, uri=uri, code=error_code)
        return record

    def list_failures(
        self, catalogue_id: int, limit: int = 100, offset: int = 0
    ) -> list[IngestFailure]:
        """A catalogue's ingest failures, newest first."""
        _check_page(limit, offset)
        stmt = (
            select(IngestFailureRow)
            .where(IngestFailureRow.catalogue_id == catalogue_id)
            .order_by(IngestFailureRow.created_at.desc(), IngestFailureRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._session() as s:
            return [_failure(r) for r in s.scalars(stmt)]
