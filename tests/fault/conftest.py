"""Fixtures of the fault-injection tests: private PostgreSQL, Redis, Tansu and Qdrant REST
stand-in instances (never the machine's shared ones), a supervisor of the service
processes, and the report every test writes (one JSON line in the log, in a file of the
test's tmp folder, and in the terminal summary so CI output shows it)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faultsvc import PrivatePostgres, PrivateRedis, PrivateTansu

from storycue.log import get_logger
from support.qdrant_rest import QdrantRestServer

log = get_logger("tests.fault")

#: Every report of this session, printed by :func:`pytest_terminal_summary`.
REPORTS: list[dict[str, Any]] = []


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        from storycue.storage import MetadataStore

        with MetadataStore(pg.url) as md:
            md.migrate()
        yield pg
    finally:
        pg.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path / "redis") as redis:
        yield redis


@pytest.fixture
def private_tansu(tmp_path: Path) -> Iterator[PrivateTansu]:
    with PrivateTansu(tmp_path / "tansu") as tansu:
        yield tansu


@pytest.fixture
def qdrant_rest(tmp_path: Path) -> Iterator[QdrantRestServer]:
    """The Qdrant REST stand-in (tests/support): the workers and the test process both
    reach the one vector store through it, as they would a Qdrant server."""
    with QdrantRestServer(tmp_path / "qdrant", log_path=tmp_path / "qdrant-rest.log") as server:
        yield server


@pytest.fixture
def fault_report(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[dict[str, Any]], Path]:
    """``report(summary)``: log ``summary`` as one JSON line, append it to
    ``<tmp>/fault-report.jsonl`` and keep it for the terminal summary; the file's path."""

    def report(summary: dict[str, Any]) -> Path:
        line = json.dumps(summary, sort_keys=True)
        path = tmp_path / "fault-report.jsonl"
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        log.info("fault_report", test=request.node.name, report=line, path=str(path))
        sys.stdout.write(f"\nfault report ({path}): {line}\n")
        REPORTS.append({"test": request.node.nodeid, **summary})
        return path

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault tolerance: what each test checked")
    for r in REPORTS:
        terminalreporter.write_line(json.dumps(r, sort_keys=True))
