"""Where checkpoints and encoder deltas are looked up (storycue.models.checkpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storycue.config import Settings
from storycue.errors import ModelNotFoundError, NotFoundError
from storycue.models.checkpoints import (
    EmotionHeads,
    available_models,
    checkpoint_info,
    encoder_search_dirs,
    find_checkpoint,
    find_model,
    list_checkpoints,
    model_search_dirs,
    resolve_checkpoint,
    shipped_models_dir,
    trained_checkpoint_path,
)
from storycue.models.finetuned import delta_search_dirs


def _copy_default_as(settings: Settings, folder: Path, version: str) -> Path:
    """The shipped default's heads saved as another version in ``folder``."""
    heads = EmotionHeads.load(find_checkpoint(settings.emotion_model, settings))
    heads.info.identity = heads.info.identity.model_copy(update={"version": version})
    path = folder / f"{heads.info.identity.name}-{version}.safetensors"
    heads.save(path)
    return path


def test_every_folder_is_decided_in_one_place(tmp_path: Path) -> None:
    home, extra = tmp_path / "home", tmp_path / "extra"
    s = Settings(home=home, model_dir=extra)
    assert model_search_dirs(s) == [shipped_models_dir(), extra, home / "models"]
    assert encoder_search_dirs(s) == [d / "encoders" for d in model_search_dirs(s)]
    assert delta_search_dirs(s) == encoder_search_dirs(s)
    assert trained_checkpoint_path(s, "va", "9.0.0") == extra / "va-9.0.0.safetensors"
    plain = Settings(home=home)
    assert model_search_dirs(plain) == [shipped_models_dir(), home / "models"]
    assert trained_checkpoint_path(plain, "va", "9.0.0") == home / "models/va-9.0.0.safetensors"
    # one folder named twice is searched once
    same = Settings(home=home, model_dir=home / "models")
    assert model_search_dirs(same) == [shipped_models_dir(), home / "models"]


def test_a_model_trained_into_home_is_found_by_name_and_version(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home")
    saved = _copy_default_as(s, trained_checkpoint_path(s, "x", "0").parent, "99.0.0")
    name = checkpoint_info(saved).identity.name
    assert find_checkpoint(name, s) == saved  # the newest version of the name wins
    assert find_checkpoint(saved.stem, s) == saved
    assert find_model(s, name, "99.0.0").path == saved
    assert saved in [e.path for e in available_models(s)]
    # the shipped folder alone does not hold it
    assert resolve_checkpoint(name) != saved
    with pytest.raises(NotFoundError):
        find_model(s, name, "98.0.0")
    with pytest.raises(ModelNotFoundError, match="unknown emotion model"):
        find_checkpoint("no-such-model", s)


def test_a_file_reached_through_two_folders_is_listed_once(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home")
    folder = tmp_path / "home" / "models"
    folder.mkdir(parents=True)
    saved = _copy_default_as(s, folder, "77.0.0")
    twice = list_checkpoints([folder, folder.parent / "models"])
    assert twice == [saved]
