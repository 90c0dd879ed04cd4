"""Storage: metadata in SQL (SQLAlchemy 2 + Alembic), vectors in Qdrant.

- :class:`MetadataStore` — catalogues, tracks, models, embedding provenance and ingest
  failures in SQLite (default) or PostgreSQL; returns immutable records.
- :class:`VectorStore` / :class:`QdrantVectorStore` — one vector collection per
  :class:`~storycue.identity.ModelIdentity`, identity-checked on every use.
- :func:`open_metadata_store` / :func:`open_vector_store` — from :class:`Settings`.

The records the stores return live in :mod:`storycue.storage.records`.
"""

from storycue.storage.factory import close_vector_stores, open_metadata_store, open_vector_store
from storycue.storage.metadata import MetadataStore
from storycue.storage.qdrant import QdrantVectorStore
from storycue.storage.records import TrackCreate
from storycue.storage.vectors import (
    CollectionInfo,
    SearchFilter,
    StoredVector,
    VectorHit,
    VectorPoint,
    VectorStore,
    point_id_for,
    track_payload,
)

__all__ = [
    "CollectionInfo",
    "MetadataStore",
    "QdrantVectorStore",
    "SearchFilter",
    "StoredVector",
    "TrackCreate",
    "VectorHit",
    "VectorPoint",
    "VectorStore",
    "close_vector_stores",
    "open_metadata_store",
    "open_vector_store",
    "point_id_for",
    "track_payload",
]
