"""What only QdrantVectorStore's local mode does (point ids, the folder lock, foreign
collections, its constructor); the behaviour every vector store shares is
tests/storage/test_vector_congruence.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from storycue.errors import (
    ConfigurationError,
    ModelMismatchError,
)
from storycue.identity import ModelIdentity
from storycue.storage import (
    QdrantVectorStore,
    point_id_for,
)
from support.vectors import catalogue_points

COS = ModelIdentity(name="va-regression", version="1.0.0", dim=2)
EUC = ModelIdentity(name="va-euclid", version="1.0.0", dim=2)


def test_point_ids_are_deterministic_uuids() -> None:
    assert point_id_for(42) == point_id_for("42") == point_id_for(42)
    assert point_id_for(42) != point_id_for(43)
    assert uuid.UUID(point_id_for(42)).version == 5


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
