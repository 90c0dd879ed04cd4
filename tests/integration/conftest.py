"""Fixtures of the multi-process tests: a throw-away PostgreSQL database, Redis, Tansu,
and a supervisor of the service processes that never leaks one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from support.local import require_port
from support.postgres import throwaway_database
from support.tansu import TansuBroker, tansu_broker

#: Redis database of these tests' Celery queues (purged before each test).
REDIS_URL = os.environ.get("STORYCUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database migrated to the newest schema (dropped afterwards)."""
    with throwaway_database("storycue_it", migrate=True) as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """Redis as the Celery broker, its queues purged of an earlier run's leftovers."""
    require_port("Redis", "127.0.0.1", 6379)
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
    with tansu_broker() as broker:
        yield broker
