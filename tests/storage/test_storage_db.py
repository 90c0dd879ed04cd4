"""Engine construction and the settings factories."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from storycue.config import Settings
from storycue.errors import ConfigurationError
from storycue.storage import open_metadata_store, open_vector_store
from storycue.storage.db import create_db_engine, normalize_database_url
from storycue.storage.migrate import head_revision


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_urls_are_normalised(given: str, driver: str) -> None:
    assert normalize_database_url(given).drivername == driver


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "not a url"])
def test_unsupported_urls_are_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        normalize_database_url(bad)


def test_sqlite_enables_foreign_keys_and_wal(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        engine.dispose()
    memory = create_db_engine("sqlite://")
    try:
        with memory.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        memory.dispose()


def test_open_metadata_store_migrates_embedded_sqlite(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    store = open_metadata_store(settings)
    try:
        assert store.dialect == "sqlite"
        assert store.current_revision() == head_revision()
        assert (tmp_path / "home" / "storycue.db").is_file()
    finally:
        store.close()


@pytest.mark.postgres
def test_open_metadata_store_on_postgres_url(pg_url: str) -> None:
    assert pg_url.startswith("postgresql://")
    store = open_metadata_store(Settings(database_url=pg_url))
    try:
        assert store.engine.url.drivername == "postgresql+psycopg"
        assert store.current_revision() is None  # servers are migrated explicitly
        store.migrate()
        assert store.is_up_to_date()
    finally:
        store.close()


def test_open_vector_store_caches_one_local_store_per_folder(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", vector_backend="qdrant-local")
    a = open_vector_store(settings)
    try:
        assert open_vector_store(settings) is a
        assert open_vector_store(Settings(qdrant_path=tmp_path / "home" / "qdrant")) is a
    finally:
        a.close()
    b = open_vector_store(settings)  # a closed store is replaced
    try:
        assert b is not a
        assert b.collections() == []
    finally:
        b.close()
