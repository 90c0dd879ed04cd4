"""Open the configured stores: embedded defaults or servers, from :class:`Settings`."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from storycue.config import Settings, get_settings
from storycue.errors import ConfigurationError
from storycue.log import get_logger
from storycue.storage.db import normalize_database_url
from storycue.storage.metadata import MetadataStore
from storycue.storage.qdrant import QdrantVectorStore
from storycue.storage.vectors import VectorStore

if TYPE_CHECKING:
    from storycue.storage.edge import EdgeVectorStore

log = get_logger(__name__)

_lock = threading.Lock()
_local_vector_stores: dict[Path, QdrantVectorStore | EdgeVectorStore] = {}

#: Folder of the Qdrant Edge store under ``STORYCUE_HOME``.
EDGE_DIR = "qdrant-edge"
#: What ``vector_backend="auto"`` opens when no ``qdrant_url`` is set (see docs/scale.md).
EMBEDDED_DEFAULT = "qdrant-edge"


def _has_local_mode_data(path: Path) -> bool:
    """Whether a qdrant-client local-mode folder already holds collections."""
    folder = path / "collection"
    try:
        return folder.is_dir() and any(folder.iterdir())
    except OSError:
        return False


def resolve_vector_backend(settings: Settings) -> str:
    """The backend ``settings`` select: ``qdrant-server``, ``qdrant-local`` or ``qdrant-edge``.

    ``auto`` means the server when ``qdrant_url`` is set; otherwise qdrant-client's local mode
    when ``qdrant_path`` is set explicitly or the default local folder already holds
    collections (an installation from before Qdrant Edge was the default keeps its vectors),
    else Qdrant Edge. Explicit choices are checked against ``qdrant_url``.
    """
    backend = settings.vector_backend
    if backend == "auto":
        if settings.qdrant_url:
            return "qdrant-server"
        if settings.qdrant_path is not None or _has_local_mode_data(
            Path(settings.resolved_qdrant_path).expanduser()
        ):
            return "qdrant-local"
        return EMBEDDED_DEFAULT
    if backend == "qdrant-server" and not settings.qdrant_url:
        raise ConfigurationError(
            "vector_backend 'qdrant-server' needs qdrant_url (STORYCUE_QDRANT_URL)"
        )
    if backend in ("qdrant-local", "qdrant-edge") and settings.qdrant_url:
        raise ConfigurationError(
            f"vector_backend {backend!r} is embedded but qdrant_url is set: unset "
            "STORYCUE_QDRANT_URL or choose 'qdrant-server' (or 'auto')"
        )
    return backend


def open_vector_store(settings: Settings | None = None) -> VectorStore:
    """The vector store the settings describe (see :func:`resolve_vector_backend`).

    A server: a new client of ``qdrant_url`` (``qdrant_api_key`` applies). Embedded stores
    lock their folder (Qdrant Edge in ``<home>/qdrant-edge``, local mode in
    ``resolved_qdrant_path``), so one store per folder is cached and shared within the
    process (closing it ends the share; the next call opens a fresh one). Cached stores are
    closed at exit.
    """
    s = settings or get_settings()
    backend = resolve_vector_backend(s)
    if backend == "qdrant-server":
        assert s.qdrant_url is not None
        key = s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None
        return QdrantVectorStore(url=s.qdrant_url, api_key=key)
    if backend == "qdrant-edge":
        path = (Path(s.home).expanduser() / EDGE_DIR).resolve()
    else:
        path = Path(s.resolved_qdrant_path).expanduser().resolve()
    with _lock:
        store = _local_vector_stores.get(path)
        if store is None or store.closed:
            if backend == "qdrant-edge":
                from storycue.storage.edge import EdgeVectorStore

                store = EdgeVectorStore(path)
            else:
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
    """Close every cached embedded vector store (also run at interpreter exit)."""
    with _lock:
        stores = list(_local_vector_stores.values())
        _local_vector_stores.clear()
    for store in stores:
        try:
            store.close()
        except Exception as exc:  # at exit, never raise
            log.warning("closing a vector store failed", location=store.location, error=str(exc))


atexit.register(close_vector_stores)
