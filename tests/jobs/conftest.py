"""Fixtures of the job tests: a migrated database on SQLite and on PostgreSQL.

PostgreSQL: one database named ``storycue_jobs_test_<pid>_<random>`` is created per
session (``support.postgres``) and dropped at the end; each test starts from an empty
``public`` schema. An unreachable server skips the PostgreSQL half, or fails it under CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storycue.storage import MetadataStore
from support.postgres import empty_schema, migrated_metadata, throwaway_database


@pytest.fixture(scope="session")
def jobs_pg_database() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this session (dropped at the end)."""
    with throwaway_database("storycue_jobs_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return empty_schema(request.getfixturevalue("jobs_pg_database"))


@pytest.fixture
def metadata(db_url: str) -> Iterator[MetadataStore]:
    """A migrated :class:`MetadataStore` on each database."""
    with migrated_metadata(db_url) as store:
        yield store
