"""Database and vector-store fixtures of the storage tests.

Metadata tests run twice: on a SQLite file and on the real PostgreSQL server at
127.0.0.1:5432 (user ``postgres``, trust auth). One database named
``storycue_test_<pid>_<random>`` is created per session (``support.postgres``) and dropped
at its end; each test starts from an empty ``public`` schema. An unreachable server skips
the PostgreSQL half, or fails it under CI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storycue.storage import MetadataStore, TrackCreate
from support.postgres import empty_schema, migrated_metadata, throwaway_database


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (dropped at the end)."""
    with throwaway_database("storycue_test") as url:
        yield url


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """The session database with an empty public schema."""
    return empty_schema(pg_database_url)


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
    with migrated_metadata(db_url) as s:
        yield s


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
