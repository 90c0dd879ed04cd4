"""Emotion models: the shipped and locally trained checkpoints."""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter

from storycue.api.deps import AppSettings, Context
from storycue.api.errors import ERROR_RESPONSES
from storycue.api.schemas import ModelDetail, ModelList, ModelOut, ModelRef
from storycue.config import Settings
from storycue.models.checkpoints import (
    ModelEntry,
    available_models,
    checkpoint_info,
    find_model,
    model_search_dirs,
    model_summary,
    resolve_checkpoint,
    shipped_models_dir,
)

router = APIRouter(prefix="/models", tags=["models"], responses=ERROR_RESPONSES)


@functools.lru_cache(maxsize=16)
def _default_ref(name: str, dirs: tuple[Path, ...]) -> ModelRef:
    info = checkpoint_info(resolve_checkpoint(name, dirs))
    ident = info.identity
    return ModelRef(name=ident.name, version=ident.version, dim=ident.dim)


def default_model_ref(settings: Settings) -> ModelRef:
    """The identity of the configured default model (read from its checkpoint)."""
    return _default_ref(settings.emotion_model, tuple(model_search_dirs(settings)))


def _out(entry: ModelEntry, default: ModelRef) -> ModelOut:
    info = entry.info
    ident = info.identity
    shipped = entry.path.resolve().parent == shipped_models_dir().resolve()
    return ModelOut(
        name=ident.name,
        version=ident.version,
        dim=ident.dim,
        family=info.family,
        distance=info.distance,
        text_encoder=info.text_encoder,
        audio_backbone=info.audio_backbone,
        default=(ident.name, ident.version) == (default.name, default.version),
        shipped=shipped,
    )


@router.get("", response_model=ModelList, summary="List the available models")
def list_models(settings: AppSettings) -> ModelList:
    default = default_model_ref(settings)
    return ModelList(models=[_out(e, default) for e in available_models(settings)])


@router.get("/{name}/{version}", response_model=ModelDetail, summary="Inspect one model")
def get_model(name: str, version: str, settings: AppSettings, rt: Context) -> ModelDetail:
    """Everything the checkpoint records (family, encoders, training data, metrics)."""
    entry = find_model(settings, name, version)
    base = _out(entry, default_model_ref(settings))
    record = rt.metadata.get_model(name, version)
    return ModelDetail(
        **base.model_dump(),
        checkpoint=model_summary(entry.info),
        registered=record is not None,
        checkpoint_sha256=None if record is None else record.checkpoint_sha256,
    )
