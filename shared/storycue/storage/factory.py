"""Open the configured stores: embedded defaults or servers, from :class:`Settings`."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from storycue.config import Settings, get_settings
from storycue.log import get_logger
from storycue.storage.db import normalize_database_url
from storycue.storage.metadata import MetadataStore
from storycue.storage.qdrant import QdrantVectorStore
from storycue.storage.vectors import VectorStore

log = get_logger(__name__)

_lock = threading.Lock()
_local_vector_stores: dict[Path, QdrantVectorStore] = {}


def open_vector_store(settings: Settings | None = None) -> VectorStore:
    """The vector store the settings describe.

    With ``qdrant_url`` set: a new client of that server (``qdrant_api_key`` applies).
    Otherwise Qdrant local mode in ``resolved_qdrant_path``; local mode locks its folder,
    so one store per folder is cached and shared within the process (closing it ends
    the share; the next call opens a fresh one). Cached stores are closed at exit.
    """
    s = settings or get_settings()
    if s.qdrant_url:
        key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
        return QdrantVectorStore(url=s.qdrant_url, api_key=key)
    path = Path(s.resolved_qdrant_path).expanduser().resolve()
    with _lock:
        store = _local_vector_stores.get(path)
        if store is None or store.closed:
            store = QdrantVectorStore(path=path)
            _local_vector_stores[path] = store
        return store


def open_metadata_store(
    settings: Settings | None = None, *, migrate: bool | None = None
) -> MetadataStore:
    """A :class:`MetadataStore` on ``resolved_database_url``.

    ``migrate`` defaults to ``True`` for SQLite (the embedded default migrates itself) and
    ``False`` for PostgreSQL, whose schema is migrated by a deploy step (or call
    :meth:`MetadataStore.migrate`). Each call returns a new store; close it when done.
    """
    s = settings or get_settings()
    url = normalize_database_url(s.resolved_database_url)
    if url.get_backend_name() == "sqlite" and s.database_url is None:
        s.ensure_home()
    if migrate is None:
        migrate = url.get_backend_name() == "sqlite"
    store = MetadataStore(url)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


def close_vector_stores() -> None:
    """Close every cached local-mode vector store (also run at interpreter exit)."""
    with _lock:
        stores = list(_local_vector_stores.values())
        _local_vector_stores.clear()
    for store in stores:
        try:
            store.close()
        except Exception as exc:  # at exit, never raise
            log.warning("closing a vector store failed", location=store.location, error=str(exc))


atexit.register(close_vector_stores)
