"""What only the Qdrant REST stand-in (tests/support/qdrant_rest.py) is asked: concurrent
creators, raw API errors, a restart. Server mode's share of the behaviour every vector store
has runs in tests/storage/test_vector_congruence.py, against the same stand-in, so the
multi-process tests that use it exercise the production server path (qdrant-client's HTTP
client) with local mode's semantics.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from storycue.identity import ModelIdentity
from storycue.storage import QdrantVectorStore
from support.qdrant_rest import QdrantRestServer
from support.vectors import angle_point, catalogue_points, clear_server

COS = ModelIdentity(name="va-regression", version="1.0.0", dim=2)
EUC = ModelIdentity(name="va-euclid", version="1.0.0", dim=2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantRestServer]:
    folder = tmp_path_factory.mktemp("qdrant-rest")
    with QdrantRestServer(folder / "vectors", log_path=folder / "server.log") as srv:
        yield srv


@pytest.fixture(params=["local", "server"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, server: QdrantRestServer
) -> Iterator[QdrantVectorStore]:
    """A local-mode store in tmp_path, then a server-mode store on the stand-in."""
    if request.param == "local":
        s = QdrantVectorStore.local(tmp_path / "vectors")
    else:
        clear_server(server.url)
        s = QdrantVectorStore.server(server.url)
    assert s.is_local == (request.param == "local")
    try:
        yield s
    finally:
        s.close()


def test_concurrent_creators_share_one_collection(server: QdrantRestServer) -> None:
    """Several processes' stores creating one collection at once: one wins (the others get
    Qdrant's 409 and verify the winner's), all can write, nothing is duplicated."""
    clear_server(server.url)
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
    clear_server(server.url)
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
