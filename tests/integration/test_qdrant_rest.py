"""The Qdrant REST stand-in (tests/support/qdrant_rest.py) against local mode.

storycue's :class:`QdrantVectorStore` runs the same behaviour checks twice: in local mode
(a folder in this process) and in server mode, by URL, against the stand-in, which serves
Qdrant's REST API over its own local-mode folder. Both must answer the same, so the
multi-process tests that use the stand-in exercise the production server path
(qdrant-client's HTTP client) with local mode's semantics.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from storycue.errors import InvalidInputError, ModelMismatchError, NotFoundError
from storycue.identity import ModelIdentity
from storycue.storage import QdrantVectorStore, SearchFilter, VectorPoint, point_id_for
from support.qdrant_rest import QdrantRestServer

COS = ModelIdentity(name="va-regression", version="1.0.0", dim=2)
EUC = ModelIdentity(name="va-euclid", version="1.0.0", dim=2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantRestServer]:
    folder = tmp_path_factory.mktemp("qdrant-rest")
    with QdrantRestServer(folder / "vectors", log_path=folder / "server.log") as srv:
        yield srv


def _clear(url: str) -> None:
    client = QdrantClient(url=url)
    try:
        for c in client.get_collections().collections:
            client.delete_collection(c.name)
    finally:
        client.close()


@pytest.fixture(params=["local", "server"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, server: QdrantRestServer
) -> Iterator[QdrantVectorStore]:
    """A local-mode store in tmp_path, then a server-mode store on the stand-in."""
    if request.param == "local":
        s = QdrantVectorStore.local(tmp_path / "vectors")
    else:
        _clear(server.url)
        s = QdrantVectorStore.server(server.url)
    assert s.is_local == (request.param == "local")
    try:
        yield s
    finally:
        s.close()


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


def test_upsert_search_count_retrieve_delete(store: QdrantVectorStore) -> None:
    store.ensure_collection(COS, "cosine")
    store.ensure_collection(COS, "cosine")  # idempotent
    store.upsert(COS, catalogue_points())
    assert store.count(COS) == 5

    hits = store.search(COS, [1.0, 0.0], top_k=3)
    assert [h.payload["track_id"] for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == pytest.approx(
        [1.0, np.cos(np.deg2rad(10)), np.cos(np.deg2rad(20))], abs=1e-6
    )
    assert hits[0].id == point_id_for(1) and hits[0].distance == "cosine"
    assert hits[0].payload == {
        "track_id": 1,
        "catalogue_id": 1,
        "duration_s": 30.0,
        "tags": ["calm", "piano"],
    }

    got = store.retrieve(COS, [point_id_for(4), point_id_for(999), point_id_for(1)])
    assert [g.id for g in got] == [point_id_for(4), point_id_for(1)]
    assert got[0].vector == pytest.approx([0.0, 1.0], abs=1e-6)  # cosine: stored normalised
    assert store.retrieve(COS, []) == []

    store.delete(COS, [point_id_for(1), point_id_for(999)])
    store.delete(COS, [])
    assert store.count(COS) == 4
    assert store.search(COS, [1.0, 0.0], top_k=1)[0].payload["track_id"] == 2
    assert store.retrieve(COS, [point_id_for(1)]) == []


def test_filters(store: QdrantVectorStore) -> None:
    store.ensure_collection(COS, "cosine")
    store.upsert(COS, catalogue_points())

    def ids(flt: SearchFilter) -> list[int]:
        hits = store.search(COS, [1.0, 0.0], top_k=10, flt=flt)
        assert store.count(COS, flt) == len(hits)
        return [int(h.payload["track_id"]) for h in hits]

    assert ids(SearchFilter(catalogue_ids=[2, 3])) == [3, 4, 5]
    assert ids(SearchFilter(catalogue_ids=[7])) == []
    assert ids(SearchFilter(min_duration_s=60.0)) == [2, 3, 4]
    assert ids(SearchFilter(max_duration_s=60.0)) == [1, 3, 5]
    assert ids(SearchFilter(min_duration_s=50, max_duration_s=130)) == [3, 4]
    assert ids(SearchFilter(tags_any=["piano", "rock"])) == [1, 2, 5]
    assert ids(SearchFilter(catalogue_ids=[1], tags_any=["calm"])) == [1]
    assert ids(SearchFilter()) == [1, 2, 3, 4, 5]


def test_reupsert_replaces_and_other_distances(store: QdrantVectorStore) -> None:
    store.ensure_collection(COS, "cosine")
    store.upsert(COS, catalogue_points())
    store.upsert(COS, [angle_point(1, 270, catalogue_id=9, duration_s=1.0, tags=["new"])])
    assert store.count(COS) == 5
    (stored,) = store.retrieve(COS, [point_id_for(1)])
    assert stored.payload["catalogue_id"] == 9
    assert stored.vector == pytest.approx([0.0, -1.0], abs=1e-6)

    store.ensure_collection(EUC, "euclid")
    store.upsert(
        EUC,
        [
            VectorPoint(id=point_id_for(1), vector=[0.0, 0.0]),
            VectorPoint(id=point_id_for(2), vector=[3.0, 4.0]),
            VectorPoint(id=point_id_for(3), vector=[1.0, 0.0]),
        ],
    )
    hits = store.search(EUC, [0.0, 0.0], top_k=3)
    assert [h.id for h in hits] == [point_id_for(1), point_id_for(3), point_id_for(2)]
    assert [h.score for h in hits] == pytest.approx([0.0, 1.0, 5.0])
    assert [h.similarity for h in hits] == pytest.approx([0.0, -1.0, -5.0])
    dot = ModelIdentity(name="dot", version="1", dim=2)
    store.ensure_collection(dot, "dot")
    store.upsert(
        dot,
        [
            VectorPoint(id=point_id_for(1), vector=[1.0, 0.0]),
            VectorPoint(id=point_id_for(2), vector=[5.0, 0.0]),
        ],
    )
    assert [h.score for h in store.search(dot, [2.0, 0.0], top_k=2)] == pytest.approx([10.0, 2.0])


def test_identity_metadata_and_mismatches(store: QdrantVectorStore) -> None:
    v2 = ModelIdentity(name=COS.name, version="2.0.0", dim=2)
    store.ensure_collection(COS, "cosine")
    store.ensure_collection(v2, "cosine")
    store.upsert(COS, [VectorPoint(id=point_id_for(1), vector=[1.0, 0.0], payload={"m": 1})])
    store.upsert(v2, [VectorPoint(id=point_id_for(1), vector=[0.0, 1.0], payload={"m": 2})])
    assert {h.payload["m"] for h in store.search(v2, [1.0, 0.0], top_k=10)} == {2}
    infos = {c.name: c for c in store.collections()}
    assert infos[COS.collection_name].identity == COS
    assert (infos[v2.collection_name].identity, infos[v2.collection_name].distance) == (
        v2,
        "cosine",
    )

    with pytest.raises(ModelMismatchError, match="dimension"):
        store.upsert(COS, [VectorPoint(id=point_id_for(1), vector=[1.0, 2.0, 3.0])])
    twin = ModelIdentity(name="VA Regression", version="1.0.0", dim=2)
    assert twin.collection_name == COS.collection_name
    with pytest.raises(ModelMismatchError):
        store.ensure_collection(twin, "cosine")
    with pytest.raises(ModelMismatchError, match="distance"):
        store.ensure_collection(COS, "euclid")
    with pytest.raises(NotFoundError):
        store.search(EUC, [1.0, 0.0], top_k=1)
    with pytest.raises(NotFoundError):
        store.count(EUC)
    with pytest.raises(InvalidInputError):
        store.upsert(COS, [VectorPoint(id="not-a-uuid", vector=[1.0, 0.0])])

    assert store.drop_collection(v2) is True
    assert store.drop_collection(v2) is False
    assert [c.name for c in store.collections()] == [COS.collection_name]


def test_same_neighbours_as_an_exact_scan(store: QdrantVectorStore) -> None:
    ident = ModelIdentity(name="congruence", version="1", dim=16)
    rng = np.random.default_rng(7)
    n = 300
    vectors = rng.standard_normal((n, ident.dim)).astype(np.float32)
    catalogues = rng.integers(1, 6, size=n)
    store.ensure_collection(ident, "cosine")
    store.upsert(
        ident,
        [
            VectorPoint(
                id=point_id_for(i),
                vector=vectors[i],
                payload={"track_id": i, "catalogue_id": int(catalogues[i])},
            )
            for i in range(n)
        ],
    )
    assert store.count(ident) == n
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for q in rng.standard_normal((3, ident.dim)):
        scores = unit @ (q / np.linalg.norm(q))
        for flt, mask in [
            (None, np.ones(n, dtype=bool)),
            (SearchFilter(catalogue_ids=[2, 4]), np.isin(catalogues, [2, 4])),
        ]:
            masked = np.where(mask, scores, -np.inf)
            expected = np.argsort(-masked, kind="stable")[:10]
            hits = store.search(ident, q, top_k=10, flt=flt)
            assert [h.payload["track_id"] for h in hits] == expected.tolist()
            assert [h.score for h in hits] == pytest.approx(masked[expected], abs=1e-5)


def test_concurrent_creators_share_one_collection(server: QdrantRestServer) -> None:
    """Several processes' stores creating one collection at once: one wins (the others get
    Qdrant's 409 and verify the winner's), all can write, nothing is duplicated."""
    _clear(server.url)
    stores = [QdrantVectorStore.server(server.url) for _ in range(6)]
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            stores[i].ensure_collection(COS, "cosine")
            stores[i].upsert(COS, [angle_point(i, 10.0 * i, catalogue_id=1)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert [c.identity for c in stores[0].collections()] == [COS]
        assert stores[0].count(COS) == len(stores)
    finally:
        for s in stores:
            s.close()


def test_raw_api_errors_aliases_and_metadata(server: QdrantRestServer) -> None:
    """The REST layer itself: Qdrant's status codes, aliases and collection metadata."""
    _clear(server.url)
    client = QdrantClient(url=server.url)
    try:
        with pytest.raises(UnexpectedResponse) as missing:
            client.get_collection("nope")
        assert missing.value.status_code == 404
        client.create_collection(
            "c1", vectors_config=qm.VectorParams(size=2, distance=qm.Distance.EUCLID)
        )
        with pytest.raises(UnexpectedResponse) as twice:
            client.create_collection(
                "c1", vectors_config=qm.VectorParams(size=2, distance=qm.Distance.EUCLID)
            )
        assert twice.value.status_code == 409 and "already exists" in str(twice.value)
        with pytest.raises(UnexpectedResponse) as bad:
            client.upsert("c1", points=[qm.PointStruct(id=1, vector=[1.0, 2.0, 3.0])])
        assert bad.value.status_code == 400

        client.upsert(
            "c1",
            points=qm.Batch(ids=[1, 2], vectors=[[0.0, 0.0], [1.0, 1.0]], payloads=[{}, {}]),
        )
        assert client.update_collection("c1", metadata={"owner": "tests"}) is True
        assert client.get_collection("c1").config.metadata == {"owner": "tests"}

        client.update_collection_aliases(
            change_aliases_operations=[
                qm.CreateAliasOperation(
                    create_alias=qm.CreateAlias(collection_name="c1", alias_name="moods")
                )
            ]
        )
        assert [(a.alias_name, a.collection_name) for a in client.get_aliases().aliases] == [
            ("moods", "c1")
        ]
        assert [a.alias_name for a in client.get_collection_aliases("c1").aliases] == ["moods"]
        via_alias = client.query_points("moods", query=[1.0, 1.0], limit=1).points
        assert [p.id for p in via_alias] == [2]
        assert client.count("moods").count == 2

        page, next_offset = client.scroll("c1", limit=1)
        assert [p.id for p in page] == [1] and next_offset == 2
        client.delete_collection("c1")
        assert client.get_aliases().aliases == []
        assert client.collection_exists("c1") is False
    finally:
        client.close()


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_data_survives_a_restart(tmp_path: Path) -> None:
    """The stand-in keeps its folder: stopped and started again, it holds the same points."""
    folder = tmp_path / "vectors"
    with QdrantRestServer(folder) as srv:
        store = QdrantVectorStore.server(srv.url)
        store.ensure_collection(EUC, "euclid")
        store.upsert(EUC, catalogue_points())
        store.close()
    with QdrantRestServer(folder) as srv:
        store = QdrantVectorStore.server(srv.url)
        try:
            assert store.count(EUC) == 5
            assert store.search(EUC, [3.0, 0.0], top_k=1)[0].payload["track_id"] == 1
        finally:
            store.close()
