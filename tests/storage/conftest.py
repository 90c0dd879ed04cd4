"""Database and vector-store fixtures of the storage tests.

Metadata tests run twice: on a SQLite file and on the real PostgreSQL server at
127.0.0.1:5432 (user ``postgres``, trust auth). One database named
``storycue_test_<pid>_<random>`` is created per session and dropped at its end; each
test starts from an empty ``public`` schema. When the server is unreachable the
PostgreSQL half is skipped with the reason, unless ``CI`` is set, where it fails.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from storycue.storage import MetadataStore, QdrantVectorStore, TrackCreate

PG_ADMIN_DSN = os.environ.get(
    "STORYCUE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (dropped at the end)."""
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}".strip()
        if _in_ci():
            pytest.fail(f"{reason} (CI is set, so this is an error)")
        pytest.skip(reason)
    name = f"storycue_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """The session database with an empty public schema."""
    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return pg_database_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[MetadataStore]:
    """A migrated :class:`MetadataStore` on each database."""
    s = MetadataStore(db_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def sha(n: object) -> str:
    """A deterministic sha256 hex digest."""
    return hashlib.sha256(str(n).encode()).hexdigest()


def track_create(catalogue_id: int, n: int, **kw: object) -> TrackCreate:
    """A valid :class:`TrackCreate` numbered ``n``."""
    fields: dict[str, object] = {
        "catalogue_id": catalogue_id,
        "uri": f"file:///music/{n}.wav",
        "content_hash": sha(n),
        "duration_s": 30.0 + n,
        "sample_rate": 16000,
        "channels": 1,
    }
    fields.update(kw)
    return TrackCreate(**fields)  # type: ignore[arg-type]


@pytest.fixture
def make_track() -> Callable[..., TrackCreate]:
    """Factory of valid :class:`TrackCreate` values: ``make_track(catalogue_id, n, **kw)``."""
    return track_create


@pytest.fixture(params=["disk", "memory"])
def vstore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantVectorStore]:
    """A Qdrant local-mode store on disk and in memory."""
    s = (
        QdrantVectorStore.local(tmp_path / "qdrant")
        if request.param == "disk"
        else QdrantVectorStore.memory()
    )
    try:
        yield s
    finally:
        s.close()
