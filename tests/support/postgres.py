"""The throw-away PostgreSQL databases of the tests (the real server, trust auth).

One database per call of :func:`throwaway_database`, named ``<prefix>_<pid>_<random>`` on
the server of ``STORYCUE_TEST_PG_ADMIN_DSN`` (default ``postgres@127.0.0.1:5432``) and
dropped (``WITH (FORCE)``) afterwards, whatever happened. An unreachable server is
:func:`support.local.absent`: a skip, or a failure under CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from storycue.storage.metadata import MetadataStore
from support.local import absent

PG_ADMIN_DSN = os.environ.get(
    "STORYCUE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_url(name: str) -> str:
    """The URL of database ``name`` on the admin DSN's server, as its user."""
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", 5432)
    return f"postgresql://{user}@{host}:{port}/{name}"


@contextmanager
def throwaway_database(prefix: str, *, migrate: bool = False) -> Iterator[str]:
    """The URL of a fresh database (migrated to the newest schema with ``migrate``)."""
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        absent(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}".strip())
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            url = database_url(name)
            if migrate:
                from storycue.storage import MetadataStore

                with MetadataStore(url) as md:
                    md.migrate()
            yield url
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def empty_schema(url: str) -> str:
    """Drop everything in the database's ``public`` schema (a fresh start for one test of
    a session's database); ``url`` again."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


@contextmanager
def migrated_metadata(url: str) -> Iterator[MetadataStore]:
    """A :class:`MetadataStore` on ``url`` (SQLite or PostgreSQL) with the schema migrated;
    closed afterwards."""
    store = MetadataStore(url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()
