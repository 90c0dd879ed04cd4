"""Fixtures of the data tests: the real data folder (skipped when absent) and the
synthetic fixtures under ``tests/fixtures/data``."""

from __future__ import annotations

from pathlib import Path

import pytest

from storycue.config import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets folder (``STORYCUE_DATA_DIR`` or ``../shared/data``); skips the
    test with a reason when it is absent."""
    folder = Settings().data_dir
    if folder is None or not folder.is_dir():
        pytest.skip(
            "real datasets not found: set STORYCUE_DATA_DIR to the data folder "
            "(default ../shared/data beside the project)"
        )
    return folder


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The synthetic fixture datasets (same layout as the real data folder)."""
    return FIXTURES


@pytest.fixture()
def fixture_settings() -> Settings:
    """Settings pointing at the synthetic fixtures."""
    return Settings(data_dir=FIXTURES, nrc_vad_path=None)
