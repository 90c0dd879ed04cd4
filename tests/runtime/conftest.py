"""Fixtures of the runtime tests: a throw-away PostgreSQL database, the brokers, audio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.local import require_port
from support.postgres import throwaway_database

BROKERS = {
    "redis": ("127.0.0.1", 6379, "redis://127.0.0.1:6379/11"),
    "rabbitmq": ("127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672//"),
}


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (dropped afterwards)."""
    with throwaway_database("storycue_rt", migrate=True) as url:
        yield url


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    """The broker URL of Redis, then of RabbitMQ (skipped when unreachable)."""
    host, port, url = BROKERS[request.param]
    require_port(request.param, host, port)
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
