"""``storycue db upgrade``: the command the Helm chart's migration hook Job runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storycue.cli import app
from storycue.config import get_settings
from storycue.storage.metadata import MetadataStore
from storycue.storage.migrate import head_revision

runner = CliRunner()


@pytest.fixture()
def use_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("STORYCUE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _revision(url: str) -> str | None:
    store = MetadataStore(url)
    try:
        return store.current_revision()
    finally:
        store.close()


def _upgrade(monkeypatch: pytest.MonkeyPatch, url: str, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("STORYCUE_DATABASE_URL", url)
    get_settings.cache_clear()
    result = runner.invoke(app, ["db", "upgrade", *args])
    return result.exit_code, result.output


def test_db_upgrade_migrates_sqlite_to_head_and_is_idempotent(
    use_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code, output = _upgrade(monkeypatch, url)
    assert code == 0, output
    assert _revision(url) == head_revision()
    assert f"database at revision {head_revision()} (was empty)" in output
    code, output = _upgrade(monkeypatch, url)
    assert code == 0, output
    assert f"(was {head_revision()})" in output


@pytest.mark.postgres
def test_db_upgrade_migrates_postgresql(
    use_db: None, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    assert _revision(pg_url) is None
    code, output = _upgrade(monkeypatch, pg_url)
    assert code == 0, output
    assert _revision(pg_url) == head_revision()
    # A new install and a re-run of the hook on upgrade are the same command.
    code, output = _upgrade(monkeypatch, pg_url)
    assert code == 0, output
    assert _revision(pg_url) == head_revision()


def test_db_upgrade_to_an_older_revision_stops_there(
    use_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'partial.db'}"
    code, output = _upgrade(monkeypatch, url, "--revision", "0001")
    assert code == 0, output
    assert _revision(url) == "0001"


def test_db_upgrade_reports_an_unreachable_database_with_a_failing_exit(
    use_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    code, output = _upgrade(monkeypatch, "postgresql://postgres@127.0.0.1:1/none")
    assert code == 3
    assert "database_error" in output
