"""Tenants: API keys, and tenant-scoped access to catalogues, registered tracks and models.

Every catalogue belongs to a tenant, and tracks, registered sources and vectors belong to
a catalogue. :class:`TenantStore` is the only way the gateway and the job workers reach
them: each method takes the tenant, and a resource of another tenant raises the same
:class:`~storycue.errors.NotFoundError` as a missing one.

API keys are ``sc_`` followed by 32 URL-safe random characters. Only their sha256 is
stored (:class:`ApiKeyStore`), with a short prefix to recognise them in listings.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from sqlalchemy import Engine, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storycue.errors import InvalidInputError, NotFoundError
from storycue.log import get_logger
from storycue.storage.metadata import MetadataStore
from storycue.storage.orm import (
    ApiKeyRow,
    CatalogueModelRow,
    CatalogueRow,
    EmbeddingRow,
    TrackRow,
    TrackSourceRow,
    utcnow,
)
from storycue.storage.records import Catalogue, EmbeddingRecord, ModelRecord, Track

log = get_logger(__name__)

KEY_PREFIX = "sc_"
KEY_RANDOM_CHARS = 32
#: Characters of a key shown in listings (``sc_`` and the first five random ones).
DISPLAY_PREFIX_LEN = 8
DEFAULT_TENANT = "default"
SourceState = Literal["pending", "ingested", "failed"]
MAX_PAGE = 1000
MAX_URI_CHARS = 4096


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def new_api_key() -> str:
    """A fresh random API key: ``sc_`` + 32 URL-safe characters (192 bits)."""
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    assert len(key) == len(KEY_PREFIX) + KEY_RANDOM_CHARS
    return key


def hash_api_key(key: str) -> str:
    """The sha256 hex digest stored for a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_tenant(tenant: str) -> str:
    """A valid tenant name (1 to 100 characters, no surrounding blanks)."""
    if not tenant or tenant != tenant.strip() or len(tenant) > 100:
        raise InvalidInputError(
            "a tenant is 1 to 100 characters without surrounding blanks",
            detail={"field": "tenant"},
        )
    return tenant


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's record (never the key itself)."""

    id: int
    tenant: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        prefix=row.prefix,
        created_at=_aware(row.created_at),
        revoked_at=None if row.revoked_at is None else _aware(row.revoked_at),
    )


class ApiKeyStore:
    """API keys of tenants, hashed at rest."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def create(self, tenant: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key of ``tenant``: its record and the key, which is shown only now."""
        check_tenant(tenant)
        if len(name) > 200:
            raise InvalidInputError("a key name is at most 200 characters")
        key = new_api_key()
        with self._session() as s:
            row = ApiKeyRow(
                tenant=tenant,
                name=name,
                key_hash=hash_api_key(key),
                prefix=key[:DISPLAY_PREFIX_LEN],
            )
            s.add(row)
            s.flush()
            record = _api_key(row)
        log.info("api key created", tenant=tenant, key_id=record.id, prefix=record.prefix)
        return record, key

    def authenticate(self, key: str) -> ApiKey | None:
        """The active key record matching ``key``, or ``None``."""
        if not key.startswith(KEY_PREFIX) or len(key) != len(KEY_PREFIX) + KEY_RANDOM_CHARS:
            return None
        with self._session() as s:
            row = s.scalar(
                select(ApiKeyRow).where(
                    ApiKeyRow.key_hash == hash_api_key(key), ApiKeyRow.revoked_at.is_(None)
                )
            )
            return None if row is None else _api_key(row)

    def list_keys(self, tenant: str) -> list[ApiKey]:
        """The tenant's keys (revoked ones too), oldest first."""
        with self._session() as s:
            rows = s.scalars(
                select(ApiKeyRow).where(ApiKeyRow.tenant == tenant).order_by(ApiKeyRow.id)
            )
            return [_api_key(r) for r in rows]

    def revoke(self, tenant: str, key_id: int) -> bool:
        """Revoke one of the tenant's keys; whether an active key was revoked."""
        with self._session() as s:
            result = s.execute(
                update(ApiKeyRow)
                .where(
                    ApiKeyRow.id == key_id,
                    ApiKeyRow.tenant == tenant,
                    ApiKeyRow.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return getattr(result, "rowcount", 0) == 1


@dataclass(frozen=True, slots=True)
class TrackSource:
    """A track registered by URI, with its ingest state and (once ingested) its track."""

    id: int
    catalogue_id: int
    uri: str
    title: str | None
    artist: str | None
    tags: tuple[str, ...]
    state: SourceState
    track_id: int | None
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime


def _source_row(s: Session, catalogue_id: int, source_id: int) -> TrackSourceRow:
    """The catalogue's source row ``source_id``, or :class:`NotFoundError`."""
    row = s.scalar(
        select(TrackSourceRow).where(
            TrackSourceRow.id == source_id, TrackSourceRow.catalogue_id == catalogue_id
        )
    )
    if row is None:
        raise NotFoundError(f"track {source_id} does not exist", detail={"track_id": source_id})
    return row


def _source(row: TrackSourceRow) -> TrackSource:
    return TrackSource(
        id=row.id,
        catalogue_id=row.catalogue_id,
        uri=row.uri,
        title=row.title,
        artist=row.artist,
        tags=tuple(row.tags or ()),
        state=cast(SourceState, row.state),
        track_id=row.track_id,
        error_code=row.error_code,
        error_message=row.error_message,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


@dataclass(frozen=True, slots=True)
class ModelSwitch:
    """A catalogue's active model (``None``: the configured default) and the model switch
    in progress: the ``pending`` model and the re-embed ``job_id`` (both or neither)."""

    active: ModelRecord | None
    pending: ModelRecord | None
    job_id: str | None


def _uri_hash(uri: str) -> str:
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()


class TenantStore:
    """Tenant-scoped catalogues, registered tracks and active models.

    Wraps a migrated :class:`MetadataStore` (sharing its engine). Another tenant's
    catalogue, track or source answers :class:`NotFoundError` exactly like a missing one.
    """

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata
        self._sessions = sessionmaker(metadata.engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # ---- catalogues ----------------------------------------------------------------------
    def create_catalogue(self, tenant: str, name: str) -> tuple[Catalogue, bool]:
        """Create (or find) the tenant's catalogue ``name``; ``(catalogue, created)``."""
        check_tenant(tenant)
        existing = self.metadata.get_catalogue(name, tenant)
        if existing is not None:
            return existing, False
        return self.metadata.get_or_create_catalogue(name, tenant), True

    def catalogue(self, tenant: str, name: str) -> Catalogue:
        """The tenant's catalogue ``name``, or :class:`NotFoundError`."""
        cat = self.metadata.get_catalogue(name, tenant)
        if cat is None:
            raise NotFoundError(f"catalogue {name!r} does not exist", detail={"catalogue": name})
        return cat

    def catalogue_by_id(self, tenant: str, catalogue_id: int) -> Catalogue:
        """The tenant's catalogue with this id, or :class:`NotFoundError`."""
        cat = self.metadata.get_catalogue_by_id(catalogue_id)
        if cat is None or cat.tenant != tenant:
            raise NotFoundError(
                f"catalogue {catalogue_id} does not exist", detail={"catalogue_id": catalogue_id}
            )
        return cat

    def catalogues(self, tenant: str) -> list[Catalogue]:
        """The tenant's catalogues, by name."""
        return self.metadata.list_catalogues(tenant)

    def catalogue_ids(self, tenant: str) -> list[int]:
        """Ids of every catalogue of the tenant."""
        with self._session() as s:
            return [
                int(i)
                for i in s.scalars(select(CatalogueRow.id).where(CatalogueRow.tenant == tenant))
            ]

    def catalogue_embeddings(self, tenant: str, catalogue_id: int) -> list[EmbeddingRecord]:
        """Vector provenance of every track of a catalogue (to delete the vectors)."""
        self.catalogue_by_id(tenant, catalogue_id)
        out: list[EmbeddingRecord] = []
        with self._session() as s:
            track_ids = list(
                s.scalars(select(TrackRow.id).where(TrackRow.catalogue_id == catalogue_id))
            )
        for tid in track_ids:
            out.extend(self.metadata.list_embeddings(track_id=tid))
        return out

    def delete_catalogue(self, tenant: str, name: str) -> Catalogue:
        """Delete the tenant's catalogue with its tracks and sources (not the vectors)."""
        cat = self.catalogue(tenant, name)
        self.metadata.delete_catalogue(cat.id)
        return cat

    def count_tracks(self, tenant: str, catalogue_id: int) -> int:
        """Number of ingested tracks of one of the tenant's catalogues."""
        self.catalogue_by_id(tenant, catalogue_id)
        return self.metadata.count_tracks(catalogue_id)

    # ---- tracks (ingested) --------------------------------------------------------------
    def track(self, tenant: str, track_id: int) -> Track:
        """An ingested track of the tenant, or :class:`NotFoundError`."""
        track = self.metadata.get_track(track_id)
        if track is None:
            raise NotFoundError(f"track {track_id} does not exist", detail={"track_id": track_id})
        self.catalogue_by_id(tenant, track.catalogue_id)
        return track

    # ---- registered sources --------------------------------------------------------------
    def register_source(
        self,
        tenant: str,
        catalogue_id: int,
        uri: str,
        *,
        title: str | None = None,
        artist: str | None = None,
        tags: Sequence[str] = (),
    ) -> tuple[TrackSource, bool]:
        """Register ``uri`` in a catalogue (idempotent per URI); ``(source, created)``.

        Re-registering a known URI updates its title, artist and tags, and puts a failed
        source back to ``pending`` so that the next ingest job retries it.
        """
        self.catalogue_by_id(tenant, catalogue_id)
        if not uri or len(uri) > MAX_URI_CHARS:
            raise InvalidInputError(
                f"a track URI is 1 to {MAX_URI_CHARS} characters", detail={"field": "uri"}
            )
        clean_tags = list(dict.fromkeys(str(t) for t in tags))
        if any(not t for t in clean_tags):
            raise InvalidInputError("tags must be non-empty strings", detail={"field": "tags"})
        h = _uri_hash(uri)

        def find(s: Session) -> TrackSourceRow | None:
            return s.scalar(
                select(TrackSourceRow).where(
                    TrackSourceRow.catalogue_id == catalogue_id, TrackSourceRow.uri_hash == h
                )
            )

        def refresh(s: Session, row: TrackSourceRow) -> TrackSource:
            row.title = title
            row.artist = artist
            row.tags = clean_tags
            if row.state == "failed":
                row.state = "pending"
                row.error_code = None
                row.error_message = None
            s.flush()
            return _source(row)

        with self._session() as s:
            row = find(s)
            if row is not None:
                return refresh(s, row), False
        try:
            with self._session() as s:
                row = TrackSourceRow(
                    catalogue_id=catalogue_id,
                    uri=uri,
                    uri_hash=h,
                    title=title,
                    artist=artist,
                    tags=clean_tags,
                    state="pending",
                )
                s.add(row)
                s.flush()
                return _source(row), True
        except IntegrityError:
            with self._session() as s:
                row = find(s)
                if row is None:
                    raise
                return refresh(s, row), False

    def source(self, tenant: str, catalogue_id: int, source_id: int) -> TrackSource:
        """A registered source of the tenant's catalogue, or :class:`NotFoundError`."""
        self.catalogue_by_id(tenant, catalogue_id)
        with self._session() as s:
            return _source(_source_row(s, catalogue_id, source_id))

    def sources(
        self,
        tenant: str,
        catalogue_id: int,
        *,
        limit: int = 100,
        after_id: int | None = None,
        state: SourceState | None = None,
    ) -> list[TrackSource]:
        """A page of a catalogue's registered sources, by id (after ``after_id``)."""
        # a page of MAX_PAGE plus the one look-ahead row that tells a caller a next page exists
        if not 1 <= limit <= MAX_PAGE + 1:
            raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE + 1}")
        self.catalogue_by_id(tenant, catalogue_id)
        stmt = select(TrackSourceRow).where(TrackSourceRow.catalogue_id == catalogue_id)
        if after_id is not None:
            stmt = stmt.where(TrackSourceRow.id > after_id)
        if state is not None:
            stmt = stmt.where(TrackSourceRow.state == state)
        with self._session() as s:
            rows = s.scalars(stmt.order_by(TrackSourceRow.id).limit(limit))
            return [_source(r) for r in rows]

    def sources_at(self, tenant: str, catalogue_id: int, uri: str) -> list[TrackSource]:
        """The catalogue's sources registered under ``uri`` (one, or none)."""
        self.catalogue_by_id(tenant, catalogue_id)
        with self._session() as s:
            rows = s.scalars(
                select(TrackSourceRow)
                .where(TrackSourceRow.catalogue_id == catalogue_id, TrackSourceRow.uri == uri)
                .order_by(TrackSourceRow.id)
            )
            return [_source(r) for r in rows]

    def count_sources_of_track(self, track_id: int) -> int:
        """How many registered sources (of any catalogue) point at the track."""
        with self._session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(TrackSourceRow)
                    .where(TrackSourceRow.track_id == track_id)
                )
                or 0
            )

    def count_sources(self, tenant: str, catalogue_id: int) -> dict[str, int]:
        """Registered sources of a catalogue per state."""
        self.catalogue_by_id(tenant, catalogue_id)
        with self._session() as s:
            rows = s.execute(
                select(TrackSourceRow.state, func.count())
                .where(TrackSourceRow.catalogue_id == catalogue_id)
                .group_by(TrackSourceRow.state)
            )
            found = {str(k): int(v) for k, v in rows}
        return {k: found.get(k, 0) for k in ("pending", "ingested", "failed")}

    def sources_to_ingest(self, tenant: str, catalogue_id: int, model_id: int) -> list[TrackSource]:
        """Sources needing work under ``model_id``: not ingested yet (pending or failed),
        or ingested but without a vector of that model (after an active-model switch)."""
        self.catalogue_by_id(tenant, catalogue_id)
        has_vector = exists().where(
            EmbeddingRow.track_id == TrackSourceRow.track_id, EmbeddingRow.model_id == model_id
        )
        stmt = (
            select(TrackSourceRow)
            .where(
                TrackSourceRow.catalogue_id == catalogue_id,
                (TrackSourceRow.state != "ingested")
                | TrackSourceRow.track_id.is_(None)
                | ~has_vector,
            )
            .order_by(TrackSourceRow.id)
        )
        with self._session() as s:
            return [_source(r) for r in s.scalars(stmt)]

    def mark_source(
        self,
        tenant: str,
        catalogue_id: int,
        source_id: int,
        state: SourceState,
        *,
        track_id: int | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> TrackSource:
        """Record the outcome of ingesting a source."""
        self.catalogue_by_id(tenant, catalogue_id)
        with self._session() as s:
            row = _source_row(s, catalogue_id, source_id)
            row.state = state
            if track_id is not None:
                row.track_id = track_id
            row.error_code = error_code
            row.error_message = None if error_message is None else error_message[:4000]
            s.flush()
            return _source(row)

    def delete_source(
        self, tenant: str, catalogue_id: int, source_id: int
    ) -> tuple[TrackSource, list[EmbeddingRecord]]:
        """Delete a registered source, and its track when no other source shares it.

        Returns the source and the vector provenance of the deleted track (the caller
        deletes those vectors from the vector store).
        """
        src = self.source(tenant, catalogue_id, source_id)
        gone: list[EmbeddingRecord] = []
        with self._session() as s:
            s.execute(delete(TrackSourceRow).where(TrackSourceRow.id == src.id))
            shared = False
            if src.track_id is not None:
                shared = bool(
                    s.scalar(
                        select(func.count())
                        .select_from(TrackSourceRow)
                        .where(TrackSourceRow.track_id == src.track_id)
                    )
                )
        if src.track_id is not None and not shared:
            gone = self.metadata.list_embeddings(track_id=src.track_id)
            self.metadata.delete_track(src.track_id)
        log.info("track source deleted", source_id=src.id, track_id=src.track_id, shared=shared)
        return src, gone

    # ---- active model and model switches ------------------------------------------------
    def set_active_model(self, tenant: str, catalogue_id: int, model_id: int) -> str | None:
        """Make ``model_id`` the active model of the tenant's catalogue at once, dropping
        any pending switch; the dropped switch's re-embed job id (to cancel), if any."""
        return self._write_switch(tenant, catalogue_id, model_id, None, None)

    def begin_switch(
        self,
        tenant: str,
        catalogue_id: int,
        *,
        active_model_id: int,
        pending_model_id: int,
        job_id: str,
    ) -> str | None:
        """Record a model switch in progress: searches keep ``active_model_id`` while
        ``job_id`` re-embeds the catalogue under ``pending_model_id``. Replaces a switch
        already pending; returns that switch's job id (to cancel), if any."""
        return self._write_switch(tenant, catalogue_id, active_model_id, pending_model_id, job_id)

    def _write_switch(
        self,
        tenant: str,
        catalogue_id: int,
        model_id: int,
        pending_model_id: int | None,
        job_id: str | None,
    ) -> str | None:
        self.catalogue_by_id(tenant, catalogue_id)
        for mid in (model_id, pending_model_id):
            if mid is not None and self.metadata.get_model_by_id(mid) is None:
                raise NotFoundError(f"model {mid} is not registered", detail={"model_id": mid})
        for _ in range(2):
            try:
                with self._session() as s:
                    row = s.get(CatalogueModelRow, catalogue_id, with_for_update=True)
                    if row is None:
                        s.add(
                            CatalogueModelRow(
                                catalogue_id=catalogue_id,
                                model_id=model_id,
                                pending_model_id=pending_model_id,
                                pending_job_id=job_id,
                            )
                        )
                        return None
                    replaced = row.pending_job_id
                    row.model_id = model_id
                    row.pending_model_id = pending_model_id
                    row.pending_job_id = job_id
                    row.updated_at = utcnow()
                    return replaced if replaced != job_id else None
            except IntegrityError:
                continue  # a concurrent first write: update it
        raise InvalidInputError(f"could not set the model of catalogue {catalogue_id}")

    def promote_pending(self, tenant: str, catalogue_id: int, job_id: str) -> ModelRecord | None:
        """Make the pending model active, if ``job_id`` is still the pending switch's job
        (one compare-and-set UPDATE); the newly active model, or ``None`` when the switch
        was replaced, dropped or already promoted."""
        self.catalogue_by_id(tenant, catalogue_id)
        with self._session() as s:
            pending = s.scalar(
                select(CatalogueModelRow.pending_model_id).where(
                    CatalogueModelRow.catalogue_id == catalogue_id,
                    CatalogueModelRow.pending_job_id == job_id,
                )
            )
            if pending is None:
                return None
            result = s.execute(
                update(CatalogueModelRow)
                .where(
                    CatalogueModelRow.catalogue_id == catalogue_id,
                    CatalogueModelRow.pending_job_id == job_id,
                    CatalogueModelRow.pending_model_id == pending,
                )
                .values(
                    model_id=pending,
                    pending_model_id=None,
                    pending_job_id=None,
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return None
        log.info("catalogue model promoted", catalogue_id=catalogue_id, model_id=pending)
        return self.metadata.get_model_by_id(int(pending))

    def clear_pending(self, tenant: str, catalogue_id: int, job_id: str) -> bool:
        """Drop the pending switch if ``job_id`` is still its job (compare-and-set); the
        active model stays. Whether a switch was dropped."""
        self.catalogue_by_id(tenant, catalogue_id)
        with self._session() as s:
            result = s.execute(
                update(CatalogueModelRow)
                .where(
                    CatalogueModelRow.catalogue_id == catalogue_id,
                    CatalogueModelRow.pending_job_id == job_id,
                )
                .values(pending_model_id=None, pending_job_id=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            dropped = getattr(result, "rowcount", 0) == 1
        if dropped:
            log.info("catalogue model switch dropped", catalogue_id=catalogue_id, job_id=job_id)
        return dropped

    def model_switch(self, tenant: str, catalogue_id: int) -> ModelSwitch:
        """The catalogue's active model and the switch in progress, if any."""
        self.catalogue_by_id(tenant, catalogue_id)
        with self._session() as s:
            row = s.get(CatalogueModelRow, catalogue_id)
            ids = None if row is None else (row.model_id, row.pending_model_id, row.pending_job_id)
        if ids is None:
            return ModelSwitch(None, None, None)
        model_id, pending_id, job_id = ids
        pending = None if pending_id is None else self.metadata.get_model_by_id(pending_id)
        return ModelSwitch(
            active=self.metadata.get_model_by_id(model_id),
            pending=pending,
            job_id=job_id if pending is not None else None,
        )

    def active_model(self, tenant: str, catalogue_id: int) -> ModelRecord | None:
        """The catalogue's active model (``None``: the configured default)."""
        return self.model_switch(tenant, catalogue_id).active
