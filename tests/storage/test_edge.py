"""What only the Qdrant Edge store does: its folder layout, HNSW indexing, locking, and
the factory's choice of backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe

from storycue.config import Settings
from storycue.errors import ConfigurationError, ModelMismatchError
from storycue.identity import ModelIdentity
from storycue.storage import QdrantVectorStore, SearchFilter, VectorPoint, point_id_for
from storycue.storage.edge import IDENTITY_FILE, SHARD_DIR, EdgeVectorStore
from storycue.storage.factory import close_vector_stores, open_vector_store

IDENT = ModelIdentity(name="edge-test", version="1.0.0", dim=8)


def _points(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[VectorPoint]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    cats = rng.integers(1, 11, size=n)
    points = [
        VectorPoint(
            id=point_id_for(i),
            vector=vectors[i],
            payload={"track_id": i, "catalogue_id": int(cats[i]), "duration_s": float(i % 300)},
        )
        for i in range(n)
    ]
    return vectors, cats, points


def test_layout_records_identity_beside_the_shard(tmp_path: Path) -> None:
    with EdgeVectorStore(tmp_path / "edge") as store:
        store.ensure_collection(IDENT, "euclid")
        folder = tmp_path / "edge" / IDENT.collection_name
        meta = json.loads((folder / IDENTITY_FILE).read_text())
        assert meta["model_name"] == "edge-test" and meta["dim"] == 8
        assert meta["distance"] == "euclid" and meta["backend"] == "qdrant-edge"
        assert (folder / SHARD_DIR).is_dir()
        # No temporary folder is left behind by the atomic creation.
        assert [p.name for p in (tmp_path / "edge").iterdir()] == [IDENT.collection_name]


def test_foreign_shard_and_leftover_temporary_folder(tmp_path: Path) -> None:
    root = tmp_path / "edge"
    foreign = root / IDENT.collection_name / SHARD_DIR
    shard = qe.EdgeShard.create(
        str(foreign), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=8, distance=qe.Distance.Dot))
    )
    shard.close()
    (root / ".creating-crashed").mkdir()
    with EdgeVectorStore(root) as store:
        (info,) = store.collections()  # the crashed creation is not a collection
        assert info.name == IDENT.collection_name and info.identity is None
        with pytest.raises(ModelMismatchError, match="not created by storycue"):
            store.ensure_collection(IDENT, "dot")


def test_one_process_holds_a_shard(tmp_path: Path) -> None:
    with EdgeVectorStore(tmp_path / "edge") as first:
        first.ensure_collection(IDENT, "cosine")
        with (
            EdgeVectorStore(tmp_path / "edge") as second,
            pytest.raises(ConfigurationError, match="locked"),
        ):
            second.count(IDENT)
    with EdgeVectorStore(tmp_path / "edge") as again:  # released on close
        assert again.count(IDENT) == 0


def test_hnsw_index_is_built_and_searches_match_exact(tmp_path: Path) -> None:
    """A low indexing threshold makes the optimizer build HNSW graphs on a small set; the
    filtered and unfiltered top-10 then still agree with an exact scan (low dimension)."""
    n = 3000
    vectors, cats, points = _points(n, IDENT.dim)
    with EdgeVectorStore(tmp_path / "edge", indexing_threshold_kb=10, auto_optimize=False) as st:
        st.ensure_collection(IDENT, "euclid")
        st.upsert(IDENT, points)
        assert st.stats(IDENT)["indexed_vectors"] == 0
        assert st.optimize(IDENT) is True
        stats = st.stats(IDENT)
        assert stats["points"] == n and stats["indexed_vectors"] >= n // 2
        rng = np.random.default_rng(1)
        found = total = 0
        for q in rng.standard_normal((10, IDENT.dim)):
            dist = np.linalg.norm(vectors - q, axis=1)
            for flt, mask in [(None, cats > 0), (SearchFilter(catalogue_ids=[3]), cats == 3)]:
                expected = set(np.argsort(np.where(mask, dist, np.inf))[:10].tolist())
                hits = st.search(IDENT, q, top_k=10, flt=flt)
                got = {h.payload["track_id"] for h in hits}
                assert all(mask[i] for i in got)
                found += len(got & expected)
                total += 10
        assert found / total >= 0.95


def test_factory_chooses_the_backend(tmp_path: Path) -> None:
    close_vector_stores()
    try:
        auto = open_vector_store(Settings(home=tmp_path / "a"))
        assert isinstance(auto, EdgeVectorStore)
        assert Path(auto.location) == (tmp_path / "a" / "qdrant-edge").resolve()
        assert open_vector_store(Settings(home=tmp_path / "a")) is auto  # shared per folder
        local = open_vector_store(Settings(home=tmp_path / "b", vector_backend="qdrant-local"))
        assert isinstance(local, QdrantVectorStore) and local.is_local
        edge = open_vector_store(Settings(home=tmp_path / "c", vector_backend="qdrant-edge"))
        assert isinstance(edge, EdgeVectorStore)
        with pytest.raises(ConfigurationError, match="qdrant_url"):
            open_vector_store(Settings(home=tmp_path / "d", vector_backend="qdrant-server"))
        with pytest.raises(ConfigurationError, match="qdrant_url"):
            open_vector_store(
                Settings(
                    home=tmp_path / "e",
                    vector_backend="qdrant-edge",
                    qdrant_url="http://127.0.0.1:6333",
                )
            )
    finally:
        close_vector_stores()
