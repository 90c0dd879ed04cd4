"""Fixtures of the job tests: a migrated database on SQLite and on PostgreSQL.

PostgreSQL: one database named ``storycue_jobs_test_<pid>_<random>`` is created per
session on the server at 127.0.0.1:5432 (user ``postgres``, trust auth) and dropped at the
end; each test starts from an empty ``public`` schema. When the server is unreachable the
PostgreSQL half is skipped with the reason, unless ``CI`` is set, where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from storycue.storage import MetadataStore

PG_ADMIN_DSN = os.environ.get(
    "STORYCUE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def jobs_pg_database() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this session (dropped at the end)."""
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}".strip()
        if _in_ci():
            pytest.fail(f"{reason} (CI is set, so this is an error)")
        pytest.skip(reason)
    name = f"storycue_jobs_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("jobs_pg_database")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


@pytest.fixture
def metadata(db_url: str) -> Iterator[MetadataStore]:
    """A migrated :class:`MetadataStore` on each database."""
    store = MetadataStore(db_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()
