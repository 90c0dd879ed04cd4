"""MetadataStore behaviour, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC
from functools import partial
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storycue.errors import ConfigurationError, InvalidInputError, ModelMismatchError, NotFoundError
from storycue.identity import ModelIdentity
from storycue.storage import MetadataStore, TrackCreate, point_id_for
from storycue.storage.migrate import MIGRATIONS_DIR, head_revision
from storycue.storage.orm import Base, CatalogueRow, EmbeddingRow, ModelRow, TrackRow

MakeTrack = Callable[..., TrackCreate]
VA = ModelIdentity(name="va-regression", version="1.0.0", dim=2)
TABLES = {"catalogues", "tracks", "models", "embeddings", "ingest_failures"}


def sha(n: object) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def schema_diff(store: MetadataStore) -> list[Any]:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


# ---- migrations -----------------------------------------------------------------------
def test_migrations_up_from_empty_match_orm_and_down_to_base(db_url: str) -> None:
    store = MetadataStore(db_url)
    try:
        assert store.current_revision() is None
        assert not store.is_up_to_date()
        store.migrate()
        assert store.current_revision() == head_revision() == "0004"
        assert store.is_up_to_date()
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        assert schema_diff(store) == []

        store.migrate()  # a second upgrade is a no-op
        assert store.current_revision() == head_revision()

        store.downgrade("base")
        assert store.current_revision() is None
        assert not TABLES & set(inspect(store.engine).get_table_names())

        store.migrate()  # and back up again
        assert schema_diff(store) == []
    finally:
        store.close()


def test_migration_0003_adds_and_drops_the_pending_model(store: MetadataStore) -> None:
    """0003 keeps the catalogue-model rows both ways (SQLite recreates the table)."""
    from storycue.storage.tenancy import TenantStore

    tenancy = TenantStore(store)
    cat = store.get_or_create_catalogue("c", "t")
    old = store.register_model(VA, family="va-regression", distance="cosine")
    new = store.register_model(
        ModelIdentity(name="va-regression", version="2.0.0", dim=2),
        family="va-regression",
        distance="cosine",
    )
    tenancy.begin_switch("t", cat.id, active_model_id=old.id, pending_model_id=new.id, job_id="j1")
    sw = tenancy.model_switch("t", cat.id)
    assert (sw.active, sw.pending, sw.job_id) == (old, new, "j1")

    def columns() -> set[str]:
        return {c["name"] for c in inspect(store.engine).get_columns("catalogue_models")}

    assert {"pending_model_id", "pending_job_id"} <= columns()
    store.downgrade("0002")
    assert not {"pending_model_id", "pending_job_id"} & columns()
    store.migrate()
    assert schema_diff(store) == []
    sw = tenancy.model_switch("t", cat.id)
    assert (sw.active, sw.pending, sw.job_id) == (old, None, None)
    # the compare-and-set: only the switch's own job promotes or drops it
    tenancy.begin_switch("t", cat.id, active_model_id=old.id, pending_model_id=new.id, job_id="j2")
    assert tenancy.promote_pending("t", cat.id, "j1") is None
    assert tenancy.clear_pending("t", cat.id, "j1") is False
    assert tenancy.promote_pending("t", cat.id, "j2") == new
    assert tenancy.promote_pending("t", cat.id, "j2") is None
    assert tenancy.model_switch("t", cat.id).active == new


def test_unmigrated_database_gives_a_clear_error(db_url: str) -> None:
    with MetadataStore(db_url) as store, pytest.raises(ConfigurationError, match="migrate"):
        store.get_or_create_catalogue("c")


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()


def test_store_accepts_an_engine_and_leaves_it_open(store: MetadataStore) -> None:
    other = MetadataStore(store.engine)
    other.close()
    assert other.closed
    with store.engine.connect() as conn:  # still usable: the store did not own it
        assert conn.execute(text("SELECT 1")).scalar() == 1


# ---- catalogues -----------------------------------------------------------------------
def test_get_or_create_catalogue_is_idempotent_per_tenant(store: MetadataStore) -> None:
    a = store.get_or_create_catalogue("jazz")
    assert a.tenant == "default"
    assert a.created_at.tzinfo is not None
    assert store.get_or_create_catalogue("jazz") == a
    b = store.get_or_create_catalogue("jazz", tenant="acme")
    assert b.id != a.id
    assert store.get_catalogue("jazz") == a
    assert store.get_catalogue("jazz", tenant="acme") == b
    assert store.get_catalogue("nope") is None
    assert store.get_catalogue_by_id(a.id) == a
    store.get_or_create_catalogue("ambient")
    assert [c.name for c in store.list_catalogues()] == ["ambient", "jazz"]
    assert store.list_catalogues("acme") == [b]
    assert len(store.list_catalogues(None)) == 3
    with pytest.raises(InvalidInputError):
        store.get_or_create_catalogue("  ")


# ---- tracks ---------------------------------------------------------------------------
def test_add_track_is_idempotent_by_content_hash(
    store: MetadataStore, make_track: MakeTrack
) -> None:
    cat = store.get_or_create_catalogue("c")
    t, created = store.add_track(
        make_track(cat.id, 1, title="Song", artist=None, tags=("calm", "piano", "calm"))
    )
    assert created
    assert t.title == "Song" and t.artist is None
    assert t.tags == ("calm", "piano")
    assert t.content_hash == sha(1)
    assert t.created_at.tzinfo is not None and t.updated_at.tzinfo is not None
    assert t.created_at.utcoffset() == UTC.utcoffset(None)

    # Same bytes under another URI (and an upper-case digest): the same track.
    again, created = store.add_track(
        make_track(cat.id, 1, uri="s3://elsewhere/x.wav", content_hash=sha(1).upper())
    )
    assert not created
    assert again == t
    assert store.count_tracks(cat.id) == 1
    assert store.find_track_by_hash(cat.id, sha(1)) == t
    assert store.find_track_by_hash(cat.id, sha(2)) is None

    # The same content in another catalogue is another track.
    other = store.get_or_create_catalogue("d")
    t2, created = store.add_track(make_track(other.id, 1))
    assert created and t2.id != t.id
    assert store.count_tracks() == 2


def test_track_validation_and_unknown_catalogue(
    store: MetadataStore, make_track: MakeTrack
) -> None:
    with pytest.raises(InvalidInputError, match="sha256"):
        make_track(1, 1, content_hash="abc")
    with pytest.raises(InvalidInputError, match="duration_s"):
        make_track(1, 1, duration_s=float("nan"))
    with pytest.raises(InvalidInputError, match="sample_rate"):
        make_track(1, 1, sample_rate=0)
    with pytest.raises(InvalidInputError, match="uri"):
        make_track(1, 1, uri="")
    with pytest.raises(NotFoundError):
        store.add_track(make_track(9999, 1))


def test_list_get_count_delete_tracks(store: MetadataStore, make_track: MakeTrack) -> None:
    cat = store.get_or_create_catalogue("c")
    ids = [store.add_track(make_track(cat.id, n))[0].id for n in range(5)]
    assert [t.id for t in store.list_tracks(cat.id, limit=2)] == ids[:2]
    assert [t.id for t in store.list_tracks(cat.id, limit=2, offset=4)] == ids[4:]
    assert store.get_track(ids[3]) is not None
    assert store.get_track(123456) is None
    got = store.get_tracks([ids[4], 999_999, ids[0]])
    assert [t.id for t in got] == [ids[4], ids[0]]
    assert store.delete_track(ids[0]) is True
    assert store.delete_track(ids[0]) is False
    assert store.count_tracks(cat.id) == 4
    with pytest.raises(InvalidInputError):
        store.list_tracks(cat.id, limit=0)


def test_unique_constraints_are_enforced_by_the_database(store: MetadataStore) -> None:
    cat = store.get_or_create_catalogue("c")
    model = store.register_model(VA, family="va", distance="euclid")

    def insert_twice(make: Callable[[], Any]) -> None:
        with Session(store.engine) as s:
            s.add(make())
            s.commit()
            s.add(make())
            with pytest.raises(IntegrityError):
                s.commit()

    insert_twice(lambda: CatalogueRow(tenant="t", name="n"))
    insert_twice(
        lambda: TrackRow(
            catalogue_id=cat.id,
            uri="u",
            duration_s=1.0,
            sample_rate=8000,
            channels=1,
            content_hash=sha("dup"),
            tags=[],
        )
    )
    insert_twice(
        lambda: ModelRow(name="m", version="1", dim=3, family="f", distance="cosine", extra={})
    )
    track_id = store.find_track_by_hash(cat.id, sha("dup"))
    assert track_id is not None
    insert_twice(
        lambda: EmbeddingRow(
            track_id=track_id.id,
            model_id=model.id,
            collection=VA.collection_name,
            point_id=point_id_for(track_id.id),
        )
    )


def test_check_constraints_and_foreign_keys_are_enforced(store: MetadataStore) -> None:
    with Session(store.engine) as s:
        s.add(
            TrackRow(
                catalogue_id=424242,
                uri="u",
                duration_s=1.0,
                sample_rate=8000,
                channels=1,
                content_hash=sha(1),
                tags=[],
            )
        )
        with pytest.raises(IntegrityError):
            s.commit()
    with Session(store.engine) as s:
        s.add(ModelRow(name="m", version="1", dim=3, family="f", distance="manhattan", extra={}))
        with pytest.raises(IntegrityError):
            s.commit()


# ---- models ---------------------------------------------------------------------------
def test_register_model_is_idempotent_and_detects_mismatch(store: MetadataStore) -> None:
    m = store.register_model(
        VA, family="va-regression", distance="euclid", metadata={"paper": "Won 2021"}
    )
    assert m.identity == VA
    assert m.checkpoint_sha256 is None
    assert m.metadata == {"paper": "Won 2021"}

    # Idempotent; a first checkpoint hash is recorded.
    m2 = store.register_model(
        VA, family="va-regression", distance="euclid", checkpoint_sha256=sha("ckpt")
    )
    assert m2.id == m.id and m2.checkpoint_sha256 == sha("ckpt")
    assert store.register_model(VA, family="va-regression", distance="euclid").id == m.id

    with pytest.raises(ModelMismatchError, match="checkpoint_sha256"):
        store.register_model(
            VA, family="va-regression", distance="euclid", checkpoint_sha256=sha("other")
        )
    with pytest.raises(ModelMismatchError, match="dim"):
        store.register_model(
            ModelIdentity(name=VA.name, version=VA.version, dim=3),
            family="va-regression",
            distance="euclid",
        )
    with pytest.raises(ModelMismatchError, match="distance"):
        store.register_model(VA, family="va-regression", distance="cosine")
    with pytest.raises(InvalidInputError):
        store.register_model(VA, family="va-regression", distance="l1")  # type: ignore[arg-type]

    v2 = store.register_model(
        ModelIdentity(name=VA.name, version="2.0.0", dim=3), family="va", distance="cosine"
    )
    assert [(r.name, r.version) for r in store.list_models()] == [
        (VA.name, "1.0.0"),
        (VA.name, "2.0.0"),
    ]
    assert store.get_model(VA.name, "2.0.0") == v2
    assert store.get_model(VA.name, "9") is None
    assert store.get_model_by_id(m.id) is not None


# ---- provenance -----------------------------------------------------------------------
def test_record_embedding_upserts_provenance(store: MetadataStore, make_track: MakeTrack) -> None:
    cat = store.get_or_create_catalogue("c")
    model = store.register_model(VA, family="va", distance="euclid")
    t1, _ = store.add_track(make_track(cat.id, 1))
    t2, _ = store.add_track(make_track(cat.id, 2))
    assert [t.id for t in store.tracks_missing_embedding(cat.id, model.id)] == [t1.id, t2.id]

    e = store.record_embedding(
        t1.id,
        model.id,
        backbone_name="MTT_musicnn",
        backbone_version="1",
        audio_encoder="va-audio",
        valence=0.25,
        arousal=-0.5,
    )
    assert e.point_id == point_id_for(t1.id)
    assert e.collection == VA.collection_name
    assert (e.valence, e.arousal) == (0.25, -0.5)
    assert [t.id for t in store.tracks_missing_embedding(cat.id, model.id)] == [t2.id]

    e2 = store.record_embedding(t1.id, model.id, valence=0.75)
    assert e2.id == e.id
    assert e2.valence == 0.75 and e2.arousal is None and e2.backbone_name is None
    assert store.get_embedding(t1.id, model.id) == e2
    assert len(store.list_embeddings(model_id=model.id)) == 1
    assert store.list_embeddings(track_id=t2.id) == []

    with pytest.raises(NotFoundError):
        store.record_embedding(999_999, model.id)
    with pytest.raises(NotFoundError):
        store.record_embedding(t1.id, 999_999)
    with pytest.raises(InvalidInputError):
        store.record_embedding(t2.id, model.id, valence=float("inf"))


# ---- cascades -------------------------------------------------------------------------
def test_deletes_cascade(store: MetadataStore, make_track: MakeTrack) -> None:
    cat = store.get_or_create_catalogue("c")
    model = store.register_model(VA, family="va", distance="euclid")
    t1, _ = store.add_track(make_track(cat.id, 1))
    t2, _ = store.add_track(make_track(cat.id, 2))
    store.record_embedding(t1.id, model.id)
    store.record_embedding(t2.id, model.id)
    store.record_failure(cat.id, "file:///bad.wav", "audio_decode_error", "not audio")

    assert store.delete_track(t1.id)
    assert store.get_embedding(t1.id, model.id) is None
    assert store.get_embedding(t2.id, model.id) is not None

    # A raw SQL delete proves the cascade is the database's (SQLite: PRAGMA foreign_keys).
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM catalogues WHERE id = :id"), {"id": cat.id})
    assert store.count_tracks() == 0
    assert store.list_embeddings() == []
    assert store.list_failures(cat.id) == []
    assert store.get_model_by_id(model.id) is not None  # models are not owned by catalogues

    cat2 = store.get_or_create_catalogue("c2")
    store.add_track(make_track(cat2.id, 3))
    assert store.delete_catalogue(cat2.id) is True
    assert store.delete_catalogue(cat2.id) is False
    assert store.count_tracks() == 0


# ---- failures -------------------------------------------------------------------------
def test_failures_are_recorded_with_their_reason(store: MetadataStore) -> None:
    cat = store.get_or_create_catalogue("c")
    f1 = store.record_failure(cat.id, "file:///a.mp3", "audio_decode_error", "cannot decode")
    f2 = store.record_failure(
        cat.id, "file:///b.wav", "invalid_input", "too short", content_hash=sha("b")
    )
    assert f1.content_hash is None and f2.content_hash == sha("b")
    listed = store.list_failures(cat.id)
    assert [f.id for f in listed] == [f2.id, f1.id]
    assert listed[1].error_code == "audio_decode_error"
    assert listed[1].message == "cannot decode"
    assert store.list_failures(cat.id, limit=1) == [f2]
    with pytest.raises(NotFoundError):
        store.record_failure(999_999, "x", "e", "m")


# ---- races ----------------------------------------------------------------------------
def _race(n: int, fn: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def test_concurrent_creates_make_one_row(store: MetadataStore, make_track: MakeTrack) -> None:
    for r in range(5):
        cats = _race(2, partial(store.get_or_create_catalogue, f"race-{r}"))
        assert cats[0] == cats[1]
        cat = cats[0]
        added = _race(2, partial(store.add_track, make_track(cat.id, r)))
        assert added[0][0] == added[1][0]
        assert sorted(created for _, created in added) == [False, True]
        assert store.count_tracks(cat.id) == 1
        identity = ModelIdentity(name="m", version=str(r), dim=4)
        models = _race(2, partial(store.register_model, identity, "f", "cosine"))
        assert models[0] == models[1]
        track = added[0][0]
        embs = _race(2, partial(store.record_embedding, track.id, models[0].id))
        assert embs[0].id == embs[1].id
    assert len(store.list_catalogues()) == 5
    assert len(store.list_models()) == 5
