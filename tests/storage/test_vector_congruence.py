"""One behaviour suite over every vector store: qdrant-client's local mode on disk and in
memory and in server mode (:class:`QdrantVectorStore`; the server is the REST stand-in of
``tests/support/qdrant_rest.py``, which speaks Qdrant's API over its own local folder), and
Qdrant Edge (:class:`EdgeVectorStore`).

Whatever store the settings pick, swapping it must not change what callers see: order,
scores, filters, identity checks, aliases, persistence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storycue.errors import ConfigurationError, InvalidInputError, ModelMismatchError, NotFoundError
from storycue.identity import ModelIdentity
from storycue.storage import QdrantVectorStore, SearchFilter, VectorPoint, VectorStore, point_id_for
from storycue.storage.edge import EdgeVectorStore
from support.qdrant_rest import QdrantRestServer
from support.vectors import angle_point, catalogue_points, clear_server

COS = ModelIdentity(name="va-regression", version="1.0.0", dim=2)
EUC = ModelIdentity(name="va-euclid", version="1.0.0", dim=2)

Opener = Callable[[Path], Any]
#: Every backend; the ones that keep data when closed and opened again.
BACKENDS = ("qdrant-edge", "qdrant-local", "qdrant-memory", "qdrant-server")
PERSISTENT = ("qdrant-edge", "qdrant-local", "qdrant-server")


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantRestServer]:
    folder = tmp_path_factory.mktemp("qdrant-rest")
    with QdrantRestServer(folder / "vectors", log_path=folder / "server.log") as srv:
        yield srv


def _opener(backend: str, request: pytest.FixtureRequest) -> Opener:
    """How to open ``backend`` on a folder (the server ignores it: one server per module,
    emptied before each test)."""
    if backend == "qdrant-local":
        return QdrantVectorStore.local
    if backend == "qdrant-memory":
        return lambda _folder: QdrantVectorStore.memory()
    if backend == "qdrant-edge":
        return EdgeVectorStore
    server: QdrantRestServer = request.getfixturevalue("rest_server")
    clear_server(server.url)
    return lambda _folder: QdrantVectorStore.server(server.url)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = _opener(str(request.param), request)(tmp_path / "vectors")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(params=PERSISTENT)
def opener(request: pytest.FixtureRequest) -> Opener:
    return _opener(str(request.param), request)


def test_implements_the_protocol(store: Any) -> None:
    assert isinstance(store, VectorStore)


def test_upsert_search_count_retrieve_delete(store: Any) -> None:
    store.ensure_collection(COS, "cosine")
    store.ensure_collection(COS, "cosine")  # idempotent
    store.upsert(COS, catalogue_points())
    assert store.count(COS) == 5

    hits = store.search(COS, [1.0, 0.0], top_k=3)
    assert [h.payload["track_id"] for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == pytest.approx(
        [1.0, np.cos(np.deg2rad(10)), np.cos(np.deg2rad(20))], abs=1e-6
    )
    assert hits[0].similarity == hits[0].score and hits[0].distance == "cosine"
    assert hits[0].id == point_id_for(1)
    assert hits[0].payload == {
        "track_id": 1,
        "catalogue_id": 1,
        "duration_s": 30.0,
        "tags": ["calm", "piano"],
    }

    got = store.retrieve(COS, [point_id_for(4), point_id_for(999), point_id_for(1)])
    assert [g.payload["track_id"] for g in got] == [4, 1]
    assert [g.id for g in got] == [point_id_for(4), point_id_for(1)]
    assert got[0].vector == pytest.approx([0.0, 1.0], abs=1e-6)  # cosine: stored normalised
    assert store.retrieve(COS, []) == []

    store.delete(COS, [point_id_for(1), point_id_for(999)])
    store.delete(COS, [])
    assert store.count(COS) == 4
    assert store.search(COS, [1.0, 0.0], top_k=1)[0].payload["track_id"] == 2
    assert store.retrieve(COS, [point_id_for(1)]) == []


def test_filters(store: Any) -> None:
    store.ensure_collection(COS, "cosine")
    store.upsert(COS, catalogue_points())

    def ids(flt: SearchFilter) -> list[int]:
        hits = store.search(COS, [1.0, 0.0], top_k=10, flt=flt)
        assert store.count(COS, flt) == len(hits)
        return [h.payload["track_id"] for h in hits]

    assert ids(SearchFilter(catalogue_ids=[2, 3])) == [3, 4, 5]
    assert ids(SearchFilter(catalogue_ids=[7])) == []
    assert ids(SearchFilter(min_duration_s=60.0)) == [2, 3, 4]
    assert ids(SearchFilter(max_duration_s=60.0)) == [1, 3, 5]
    assert ids(SearchFilter(min_duration_s=50, max_duration_s=130)) == [3, 4]
    assert ids(SearchFilter(tags_any=["piano", "rock"])) == [1, 2, 5]
    assert ids(SearchFilter(catalogue_ids=[1], tags_any=["calm"])) == [1]
    assert ids(SearchFilter()) == [1, 2, 3, 4, 5]


def test_reupsert_replaces_instead_of_duplicating(store: Any) -> None:
    store.ensure_collection(COS, "cosine")
    store.upsert(COS, catalogue_points())
    store.upsert(COS, [angle_point(1, 270, catalogue_id=9, duration_s=1.0, tags=["new"])])
    assert store.count(COS) == 5
    (stored,) = store.retrieve(COS, [point_id_for(1)])
    assert stored.payload["catalogue_id"] == 9
    assert stored.vector == pytest.approx([0.0, -1.0], abs=1e-6)
    assert store.count(COS, SearchFilter(catalogue_ids=[1])) == 1


def test_euclid_and_dot_scores(store: Any) -> None:
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
    (far,) = store.retrieve(EUC, [point_id_for(2)])
    assert far.vector == pytest.approx([3.0, 4.0])  # euclid: stored as given

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


def test_identity_and_dimension_mismatches_are_refused(store: Any) -> None:
    store.ensure_collection(COS, "cosine")
    with pytest.raises(ModelMismatchError, match="dimension"):
        store.upsert(COS, [VectorPoint(id=point_id_for(1), vector=[1.0, 2.0, 3.0])])
    with pytest.raises(ModelMismatchError, match="dimension"):
        store.search(COS, np.zeros(3), top_k=1)
    twin = ModelIdentity(name="VA Regression", version="1.0.0", dim=2)
    assert twin.collection_name == COS.collection_name
    with pytest.raises(ModelMismatchError):
        store.ensure_collection(twin, "cosine")
    with pytest.raises(ModelMismatchError):
        store.search(twin, [1.0, 0.0], top_k=1)
    with pytest.raises(ModelMismatchError):
        store.upsert(twin, [VectorPoint(id=point_id_for(1), vector=[1.0, 0.0])])
    with pytest.raises(ModelMismatchError, match="distance"):
        store.ensure_collection(COS, "euclid")
    with pytest.raises(NotFoundError):
        store.search(EUC, [1.0, 0.0], top_k=1)
    with pytest.raises(NotFoundError):
        store.count(EUC)
    with pytest.raises(InvalidInputError):
        store.upsert(COS, [VectorPoint(id="not-a-uuid", vector=[1.0, 0.0])])
    with pytest.raises(InvalidInputError):
        store.upsert(COS, [VectorPoint(id=point_id_for(1), vector=[float("nan"), 0.0])])
    with pytest.raises(InvalidInputError):
        store.search(COS, [1.0, 0.0], top_k=0)
    with pytest.raises(InvalidInputError):
        store.ensure_collection(EUC, "manhattan")
    assert store.count(COS) == 0


def test_two_identities_never_mix(store: Any) -> None:
    v2 = ModelIdentity(name=COS.name, version="2.0.0", dim=2)
    store.ensure_collection(COS, "cosine")
    store.ensure_collection(v2, "cosine")
    store.upsert(COS, [VectorPoint(id=point_id_for(1), vector=[1.0, 0.0], payload={"m": 1})])
    store.upsert(
        v2,
        [
            VectorPoint(id=point_id_for(1), vector=[0.0, 1.0], payload={"m": 2}),
            VectorPoint(id=point_id_for(2), vector=[1.0, 1.0], payload={"m": 2}),
        ],
    )
    assert store.count(COS) == 1 and store.count(v2) == 2
    assert {h.payload["m"] for h in store.search(COS, [1.0, 0.0], top_k=10)} == {1}
    assert {h.payload["m"] for h in store.search(v2, [1.0, 0.0], top_k=10)} == {2}
    infos = {c.name: c for c in store.collections()}
    assert infos[COS.collection_name].identity == COS
    assert infos[v2.collection_name].identity == v2
    assert (infos[v2.collection_name].distance, infos[v2.collection_name].dim) == ("cosine", 2)
    assert store.drop_collection(v2) is True
    assert store.drop_collection(v2) is False
    assert [c.name for c in store.collections()] == [COS.collection_name]
    with pytest.raises(NotFoundError):
        store.count(v2)


def test_reopen_after_close_keeps_data_and_identity(opener: Opener, tmp_path: Path) -> None:
    folder = tmp_path / "vectors"
    store = opener(folder)
    store.ensure_collection(EUC, "euclid")
    store.upsert(EUC, catalogue_points())
    store.delete(EUC, [point_id_for(5)])
    store.close()
    store.close()  # idempotent
    with pytest.raises(ConfigurationError, match="closed"):
        store.count(EUC)

    store = opener(folder)
    try:
        assert store.count(EUC) == 4
        (info,) = store.collections()
        assert (info.identity, info.distance, info.dim) == (EUC, "euclid", 2)
        assert store.search(EUC, [3.0, 0.0], top_k=1)[0].payload["track_id"] == 1
        assert store.count(EUC, SearchFilter(catalogue_ids=[2])) == 2
        store.ensure_collection(EUC, "euclid")
        with pytest.raises(ModelMismatchError):
            store.ensure_collection(EUC, "cosine")
    finally:
        store.close()


def _random_catalogues(
    store: Any, ident: ModelIdentity, distance: str, rng: np.random.Generator, n: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random points spread over catalogues 1..k-1, stored; their vectors and
    catalogues."""
    vectors = rng.standard_normal((n, ident.dim)).astype(np.float32)
    catalogues = rng.integers(1, k, size=n)
    store.ensure_collection(ident, distance)
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
    return vectors, catalogues


def test_same_neighbours_as_an_exact_scan(store: Any) -> None:
    """Random vectors: both backends return the exact top-k, filtered or not."""
    ident = ModelIdentity(name="congruence", version="1", dim=16)
    rng = np.random.default_rng(7)
    n = 500
    vectors, catalogues = _random_catalogues(store, ident, "cosine", rng, n, 6)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for q in rng.standard_normal((5, ident.dim)):
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


def test_a_batch_of_searches_answers_each_query_as_one_search_would(store: Any) -> None:
    """``search_batch``: the hits of every query in order, equal to one ``search`` each,
    across more queries than one backend batch holds, with and without a filter."""
    ident = ModelIdentity(name="congruence", version="1", dim=16)
    rng = np.random.default_rng(11)
    _random_catalogues(store, ident, "dot", rng, 300, 4)
    queries = rng.standard_normal((150, ident.dim)).astype(np.float32)  # > one batch of 64
    for flt in (None, SearchFilter(catalogue_ids=[2])):
        batch = store.search_batch(ident, queries, top_k=5, flt=flt)
        assert len(batch) == len(queries)
        for q, hits in zip(queries, batch, strict=True):
            one = store.search(ident, q, top_k=5, flt=flt)
            assert [h.id for h in hits] == [h.id for h in one]
            assert [h.score for h in hits] == pytest.approx([h.score for h in one], abs=1e-5)
            assert [h.payload for h in hits] == [h.payload for h in one]
            if flt is not None:
                assert {h.payload["catalogue_id"] for h in hits} == {2}
    assert store.search_batch(ident, np.zeros((0, ident.dim)), top_k=5) == []
    with pytest.raises(ModelMismatchError):  # every query is checked before any is searched
        store.search_batch(ident, [queries[0], queries[1][:8]], top_k=5)
    with pytest.raises(InvalidInputError):
        store.search_batch(ident, [[float("nan")] * ident.dim], top_k=5)
    with pytest.raises(InvalidInputError):
        store.search_batch(ident, queries[:2], top_k=0)


# ---- aliases ---------------------------------------------------------------------------------
NEW = ModelIdentity(name="va-regression", version="2.0.0", dim=2)
ALIAS = "storycue-cat-7"


def test_alias_set_resolve_switch_and_delete(store: Any) -> None:
    assert store.resolve_alias(ALIAS) is None
    assert store.delete_alias(ALIAS) is False
    store.ensure_collection(COS, "cosine")
    store.ensure_collection(NEW, "cosine")
    store.upsert(COS, catalogue_points())
    store.set_alias(ALIAS, COS)
    assert store.resolve_alias(ALIAS) == COS
    store.set_alias(ALIAS, COS)  # idempotent
    assert store.resolve_alias(ALIAS) == COS
    store.set_alias(ALIAS, NEW)  # the switch: one operation
    assert store.resolve_alias(ALIAS) == NEW
    store.set_alias("storycue-cat-8", COS)  # aliases are independent
    assert store.resolve_alias("storycue-cat-8") == COS
    assert store.resolve_alias(ALIAS) == NEW
    # an alias is not a collection: the collections are untouched
    assert {c.name for c in store.collections()} == {COS.collection_name, NEW.collection_name}
    assert store.count(COS) == 5 and store.count(NEW) == 0
    assert store.delete_alias(ALIAS) is True
    assert store.resolve_alias(ALIAS) is None
    assert store.delete_alias(ALIAS) is False
    assert store.resolve_alias("storycue-cat-8") == COS
    assert store.count(COS) == 5


def test_alias_rules(store: Any) -> None:
    with pytest.raises(NotFoundError):
        store.set_alias(ALIAS, COS)  # no collection to point at
    assert store.resolve_alias(ALIAS) is None
    store.ensure_collection(COS, "cosine")
    store.ensure_collection(NEW, "cosine")
    with pytest.raises(InvalidInputError):
        store.set_alias(NEW.collection_name, COS)  # a collection's name
    for bad in ("", "-x", "a/b", "a b", "x" * 201):
        with pytest.raises(InvalidInputError):
            store.set_alias(bad, COS)
        with pytest.raises(InvalidInputError):
            store.resolve_alias(bad)
    clash = ModelIdentity(name="va_regression", version="1.0.0", dim=2)
    with pytest.raises(ModelMismatchError):
        store.set_alias(ALIAS, clash)  # same collection name, another identity
    assert store.resolve_alias(ALIAS) is None


def test_aliases_persist_across_reopen(opener: Opener, tmp_path: Path) -> None:
    path = tmp_path / "persist"
    first = opener(path)
    try:
        first.ensure_collection(COS, "cosine")
        first.ensure_collection(NEW, "cosine")
        first.set_alias(ALIAS, COS)
        first.set_alias(ALIAS, NEW)
    finally:
        first.close()
    second = opener(path)
    try:
        assert second.resolve_alias(ALIAS) == NEW
        assert second.delete_alias(ALIAS) is True
    finally:
        second.close()
    third = opener(path)
    try:
        assert third.resolve_alias(ALIAS) is None
    finally:
        third.close()


def test_closed_store_refuses_alias_calls(opener: Opener, tmp_path: Path) -> None:
    s = opener(tmp_path / "closed")
    s.close()
    with pytest.raises(ConfigurationError):
        s.resolve_alias(ALIAS)
