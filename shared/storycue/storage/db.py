"""Engine construction: URL normalisation, SQLite pragmas, PostgreSQL via psycopg 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from storycue.errors import ConfigurationError

#: Seconds a SQLite connection waits for a competing writer before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0

_PG_BARE = {"postgresql", "postgres"}


def normalize_database_url(url: str | URL) -> URL:
    """Parse ``url`` and pin PostgreSQL to the psycopg 3 driver.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``; other URLs
    are returned parsed but unchanged. Raises :class:`ConfigurationError` on garbage.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL: {exc}") from exc
    if parsed.drivername in _PG_BARE:
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise ConfigurationError(
            f"unsupported database backend {backend!r}: use sqlite:/// or postgresql://",
            detail={"backend": backend},
        )
    return parsed


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()
        if mode is not None and str(mode[0]).lower() != "memory":
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_db_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An :class:`Engine` for ``url`` configured the way storycue needs it.

    SQLite: foreign keys enforced, WAL journal, a busy timeout, usable from several
    threads (the parent folder of a file database is created). PostgreSQL: psycopg 3
    with ``pool_pre_ping`` so that connections survive server restarts.
    """
    parsed = normalize_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        connect_args: dict[str, Any] = {
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_S,
        }
        if _is_memory_sqlite(parsed):
            engine = create_engine(
                parsed, echo=echo, connect_args=connect_args, poolclass=StaticPool
            )
        else:
            assert parsed.database is not None
            try:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot create the folder of SQLite database {parsed.database}: {exc}"
                ) from exc
            engine = create_engine(parsed, echo=echo, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(parsed, echo=echo, pool_pre_ping=True)
