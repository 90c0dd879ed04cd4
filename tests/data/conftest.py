"""Fixtures of the data tests: the real data folder (skipped when absent) and the
synthetic fixtures under ``tests/fixtures/data``."""

from __future__ import annotations

from pathlib import Path

import pytest

from storycue.config import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture(scope="session")
def data_dir(real_data_dir: Path) -> Path:
    """The real datasets folder (``STORYCUE_DATA_DIR`` or ``../shared/data``), under the
    name the data tests use; skips the test with a reason when it is absent."""
    return real_data_dir


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The synthetic fixture datasets (same layout as the real data folder)."""
    return FIXTURES


@pytest.fixture()
def fixture_settings() -> Settings:
    """Settings pointing at the synthetic fixtures."""
    return Settings(data_dir=FIXTURES, nrc_vad_path=None)
