"""A misconfigured text encoder fails with a ConfigurationError that says what to set."""

from __future__ import annotations

from pathlib import Path

import pytest

from storycue.errors import ConfigurationError, ModelNotFoundError
from storycue.models.text import TextEncoder


@pytest.mark.parametrize("name", ["not a valid/hub id,with commas", "-starts-with-a-dash"])
def test_malformed_hub_ids_are_configuration_errors(name: str) -> None:
    with pytest.raises(ConfigurationError, match="STORYCUE_TEXT_ENCODER"):
        TextEncoder(name).encode(["hello"])


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no config\.json"):
        TextEncoder(str(tmp_path))


def test_an_unknown_fine_tuned_encoder_says_where_it_looked() -> None:
    with pytest.raises(ModelNotFoundError, match="looked in"):
        TextEncoder("sentence-transformers/all-MiniLM-L6-v2+ft-0123456789")
