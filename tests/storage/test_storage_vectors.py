"""QdrantVectorStore behaviour in local mode, on disk and in memory."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from storycue.errors import (
    ConfigurationError,
    InvalidInputError,
    ModelMismatchError,
    NotFoundError,
)
from storycue.identity import ModelIdentity
from storycue.storage import (
    QdrantVectorStore,
    SearchFilter,
    VectorPoint,
    VectorStore,
    point_id_for,
)

COS = ModelIdentity(name="va-regression", version="1.0.0", dim=2)
EUC = ModelIdentity(name="va-euclid", version="1.0.0", dim=2)


def angle_point(track_id: int, degrees: float, **payload: object) -> VectorPoint:
    rad = np.deg2rad(degrees)
    return VectorPoint(
        id=point_id_for(track_id),
        vector=np.array([np.cos(rad), np.sin(rad)]) * 3.0,
        payload={"track_id": track_id, **payload},
    )


def catalogue_points() -> list[VectorPoint]:
    return [
        angle_point(1, 0, catalogue_id=1, duration_s=30.0, tags=["calm", "piano"]),
        angle_point(2, 10, catalogue_id=1, duration_s=200.0, tags=["rock"]),
        angle_point(3, 20, catalogue_id=2, duration_s=60.0, tags=["calm"]),
        angle_point(4, 90, catalogue_id=2, duration_s=120.0, tags=[]),
        angle_point(5, 180, catalogue_id=3, duration_s=45.0, tags=["sad", "piano"]),
    ]


def test_point_ids_are_deterministic_uuids() -> None:
    assert point_id_for(42) == point_id_for("42") == point_id_for(42)
    assert point_id_for(42) != point_id_for(43)
    assert uuid.UUID(point_id_for(42)).version == 5


def test_implements_the_protocol(vstore: QdrantVectorStore) -> None:
    assert isinstance(vstore, VectorStore)


def test_upsert_search_count_retrieve_delete(vstore: QdrantVectorStore) -> None:
    vstore.ensure_collection(COS, "cosine")
    vstore.ensure_collection(COS, "cosine")  # idempotent
    vstore.upsert(COS, catalogue_points())
    assert vstore.count(COS) == 5

    hits = vstore.search(COS, [1.0, 0.0], top_k=3)
    assert [h.payload["track_id"] for h in hits] == [1, 2, 3]
    assert hits[0].score == pytest.approx(1.0)
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].similarity == hits[0].score and hits[0].distance == "cosine"
    assert hits[0].id == point_id_for(1)

    got = vstore.retrieve(COS, [point_id_for(4), point_id_for(999), point_id_for(1)])
    assert [g.payload["track_id"] for g in got] == [4, 1]
    assert np.linalg.norm(got[0].vector) == pytest.approx(1.0)  # cosine: stored normalised

    vstore.delete(COS, [point_id_for(1), point_id_for(999)])
    assert vstore.count(COS) == 4
    assert vstore.search(COS, [1.0, 0.0], top_k=1)[0].payload["track_id"] == 2
    assert vstore.retrieve(COS, [point_id_for(1)]) == []


def test_filters(vstore: QdrantVectorStore) -> None:
    vstore.ensure_collection(COS, "cosine")
    vstore.upsert(COS, catalogue_points())

    def ids(flt: SearchFilter) -> list[int]:
        hits = vstore.search(COS, [1.0, 0.0], top_k=10, flt=flt)
        assert vstore.count(COS, flt) == len(hits)
        return [h.payload["track_id"] for h in hits]

    assert ids(SearchFilter(catalogue_ids=[2, 3])) == [3, 4, 5]
    assert ids(SearchFilter(min_duration_s=60.0)) == [2, 3, 4]
    assert ids(SearchFilter(max_duration_s=60.0)) == [1, 3, 5]
    assert ids(SearchFilter(min_duration_s=50, max_duration_s=130)) == [3, 4]
    assert ids(SearchFilter(tags_any=["piano", "rock"])) == [1, 2, 5]
    assert ids(SearchFilter(catalogue_ids=[1], tags_any=["calm"])) == [1]
    assert ids(SearchFilter()) == [1, 2, 3, 4, 5]
    with pytest.raises(InvalidInputError):
        SearchFilter(catalogue_ids=[])
    with pytest.raises(InvalidInputError):
        SearchFilter(tags_any="calm")
    with pytest.raises(InvalidInputError):
        SearchFilter(min_duration_s=10, max_duration_s=5)


def test_reupsert_replaces_instead_of_duplicating(vstore: QdrantVectorStore) -> None:
    vstore.ensure_collection(COS, "cosine")
    vstore.upsert(COS, catalogue_points())
    vstore.upsert(COS, [angle_point(1, 270, catalogue_id=9, duration_s=1.0, tags=["new"])])
    assert vstore.count(COS) == 5
    (stored,) = vstore.retrieve(COS, [point_id_for(1)])
    assert stored.payload["catalogue_id"] == 9
    assert stored.vector == pytest.approx([0.0, -1.0], abs=1e-6)


def test_euclid_and_dot_scores(vstore: QdrantVectorStore) -> None:
    vstore.ensure_collection(EUC, "euclid")
    vstore.upsert(
        EUC,
        [
            VectorPoint(id=point_id_for(1), vector=[0.0, 0.0]),
            VectorPoint(id=point_id_for(2), vector=[3.0, 4.0]),
            VectorPoint(id=point_id_for(3), vector=[1.0, 0.0]),
        ],
    )
    hits = vstore.search(EUC, [0.0, 0.0], top_k=3)
    # Qdrant reports euclid as a distance: best (smallest) first; similarity negates it.
    assert [h.id for h in hits] == [point_id_for(1), point_id_for(3), point_id_for(2)]
    assert [h.score for h in hits] == pytest.approx([0.0, 1.0, 5.0])
    assert [h.similarity for h in hits] == pytest.approx([0.0, -1.0, -5.0])

    dot = ModelIdentity(name="dot", version="1", dim=2)
    vstore.ensure_collection(dot, "dot")
    vstore.upsert(
        dot,
        [
            VectorPoint(id=point_id_for(1), vector=[1.0, 0.0]),
            VectorPoint(id=point_id_for(2), vector=[5.0, 0.0]),
        ],
    )
    hits = vstore.search(dot, [2.0, 0.0], top_k=2)
    assert [h.score for h in hits] == pytest.approx([10.0, 2.0])


def test_dimension_and_identity_mismatches(vstore: QdrantVectorStore) -> None:
    vstore.ensure_collection(COS, "cosine")
    with pytest.raises(ModelMismatchError, match="dimension"):
        vstore.upsert(COS, [VectorPoint(id=point_id_for(1), vector=[1.0, 2.0, 3.0])])
    with pytest.raises(ModelMismatchError, match="dimension"):
        vstore.search(COS, np.zeros(3), top_k=1)
    # Another model whose name sanitises to the same collection name.
    twin = ModelIdentity(name="VA Regression", version="1.0.0", dim=2)
    assert twin.collection_name == COS.collection_name
    with pytest.raises(ModelMismatchError):
        vstore.ensure_collection(twin, "cosine")
    with pytest.raises(ModelMismatchError):
        vstore.search(twin, [1.0, 0.0], top_k=1)
    with pytest.raises(ModelMismatchError, match="distance"):
        vstore.ensure_collection(COS, "euclid")
    with pytest.raises(NotFoundError):
        vstore.search(EUC, [1.0, 0.0], top_k=1)
    with pytest.raises(InvalidInputError):
        vstore.upsert(COS, [VectorPoint(id="not-a-uuid", vector=[1.0, 0.0])])
    with pytest.raises(InvalidInputError):
        vstore.upsert(COS, [VectorPoint(id=point_id_for(1), vector=[float("nan"), 0.0])])
    with pytest.raises(InvalidInputError):
        vstore.search(COS, [1.0, 0.0], top_k=0)
    assert vstore.count(COS) == 0


def test_two_identities_never_mix(vstore: QdrantVectorStore) -> None:
    v2 = ModelIdentity(name=COS.name, version="2.0.0", dim=2)
    vstore.ensure_collection(COS, "cosine")
    vstore.ensure_collection(v2, "cosine")
    vstore.upsert(COS, [VectorPoint(id=point_id_for(1), vector=[1.0, 0.0], payload={"m": 1})])
    vstore.upsert(
        v2,
        [
            VectorPoint(id=point_id_for(1), vector=[0.0, 1.0], payload={"m": 2}),
            VectorPoint(id=point_id_for(2), vector=[1.0, 1.0], payload={"m": 2}),
        ],
    )
    assert vstore.count(COS) == 1 and vstore.count(v2) == 2
    assert {h.payload["m"] for h in vstore.search(COS, [1.0, 0.0], top_k=10)} == {1}
    assert {h.payload["m"] for h in vstore.search(v2, [1.0, 0.0], top_k=10)} == {2}
    infos = {c.name: c for c in vstore.collections()}
    assert infos[COS.collection_name].identity == COS
    assert infos[v2.collection_name].identity == v2
    assert infos[v2.collection_name].distance == "cosine"
    assert vstore.drop_collection(v2) is True
    assert vstore.drop_collection(v2) is False
    assert [c.name for c in vstore.collections()] == [COS.collection_name]


def test_reopening_on_disk_keeps_data_and_identity(tmp_path: Path) -> None:
    folder = tmp_path / "qdrant"
    with QdrantVectorStore.local(folder) as store:
        store.ensure_collection(EUC, "euclid")
        store.upsert(EUC, catalogue_points())
    with pytest.raises(ConfigurationError, match="closed"):
        store.count(EUC)

    with QdrantVectorStore.local(folder) as store:
        assert store.count(EUC) == 5
        (info,) = store.collections()
        assert (info.identity, info.distance, info.dim) == (EUC, "euclid", 2)
        assert store.search(EUC, [3.0, 0.0], top_k=1)[0].payload["track_id"] == 1
        store.ensure_collection(EUC, "euclid")
        with pytest.raises(ModelMismatchError):
            store.ensure_collection(EUC, "cosine")
        # Local mode locks its folder: a second client in the process is refused clearly.
        with pytest.raises(ConfigurationError, match="one client per folder"):
            QdrantVectorStore.local(folder)


def test_foreign_collection_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "qdrant"
    raw = QdrantClient(path=str(folder))
    raw.create_collection(
        COS.collection_name, vectors_config=qm.VectorParams(size=2, distance=qm.Distance.COSINE)
    )
    raw.close()
    with QdrantVectorStore.local(folder) as store:
        with pytest.raises(ModelMismatchError, match="not created by storycue"):
            store.ensure_collection(COS, "cosine")
        (info,) = store.collections()
        assert info.identity is None and info.dim == 2


def test_constructor_needs_exactly_one_target() -> None:
    with pytest.raises(ConfigurationError):
        QdrantVectorStore()
    with pytest.raises(ConfigurationError):
        QdrantVectorStore(url="http://localhost:6333", in_memory=True)
