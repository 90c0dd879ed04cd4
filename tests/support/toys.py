"""Toy emotion models for the tests: heads on a fake text encoder and a synthetic audio
backbone, so a report, a figure or a score can be checked without real encoders."""

from __future__ import annotations

from typing import Any

from storycue.identity import ModelIdentity
from storycue.models.checkpoints import CheckpointInfo, EmotionHeads
from storycue.models.emotion import EmotionModel
from storycue.models.heads import HeadConfig, MLPHead


def toy_info(
    name: str, family: str, distance: str, dim: int, heads: dict[str, HeadConfig], **fields: Any
) -> CheckpointInfo:
    """A checkpoint's metadata for heads over ``fake-encoder`` text features and
    ``synthetic`` audio ``features``; ``fields`` add or override (``va_axes=True``, ...)."""
    base: dict[str, Any] = {
        "identity": ModelIdentity(name=name, version="0.1.0", dim=dim),
        "family": family,
        "distance": distance,
        "text_encoder": "fake-encoder",
        "audio_backbone": "synthetic",
        "audio_backbone_version": "0",
        "audio_features": ["features"],
        "heads": heads,
    }
    return CheckpointInfo(**{**base, **fields})


def toy_model(
    name: str, family: str, distance: str, dim: int, heads: dict[str, MLPHead], **fields: Any
) -> EmotionModel:
    """An :class:`EmotionModel` of ``heads`` (see :func:`toy_info`)."""
    info = toy_info(name, family, distance, dim, {r: h.config for r, h in heads.items()}, **fields)
    return EmotionModel(EmotionHeads(info=info, heads=heads))
