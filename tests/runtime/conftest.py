"""Fixtures of the runtime tests: a throw-away PostgreSQL database, the brokers, audio."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import soundfile as sf
from psycopg import sql

from support.local import absent

PG_ADMIN_DSN = os.environ.get(
    "STORYCUE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BROKERS = {
    "redis": ("127.0.0.1", 6379, "redis://127.0.0.1:6379/11"),
    "rabbitmq": ("127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672//"),
}


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (dropped afterwards)."""
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        absent(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
    name = f"storycue_rt_{os.getpid()}_{uuid.uuid4().hex[:8]}"
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


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    """The broker URL of Redis, then of RabbitMQ (skipped when unreachable)."""
    host, port, url = BROKERS[request.param]
    try:
        socket.create_connection((host, port), 2).close()
    except OSError as exc:
        absent(f"{request.param} is not reachable at {host}:{port}: {exc}")
    return url


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    """Three distinct 3 s WAV clips."""
    folder = tmp_path / "clips"
    folder.mkdir()
    t = np.arange(16_000 * 3) / 16_000
    out = []
    for i, f in enumerate((196.0, 392.0, 784.0)):
        p = folder / f"tone{i}.wav"
        sf.write(p, (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), 16_000)
        out.append(p)
    return out
