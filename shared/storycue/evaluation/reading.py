"""The reading-prose section of ``storycue evaluate``: continuous emotion, arousal in
matching and, given a story set, the story agreement, composed from
:mod:`storycue.evaluation.continuous` and :mod:`storycue.evaluation.stories`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from storycue.config import Settings
from storycue.data.emobank import rescale
from storycue.data.nrc_vad import load_nrc_vad
from storycue.errors import StorycueError
from storycue.evaluation.continuous import (
    HIGH_AROUSAL_RATING,
    LOW_AROUSAL_RATING,
    Part,
    continuous_report,
    emobank_sets,
    matching_arousal,
    tag_va,
)
from storycue.evaluation.stories import story_report
from storycue.models.emotion import load_configured_model


def text_reading_section(
    model: Any,
    gallery: Any,
    gallery_vectors: np.ndarray,
    settings: Settings,
    *,
    part: Part = "test",
    stories: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """What ``storycue evaluate`` adds about reading prose (module docstring): the
    continuous section, arousal in matching against ``gallery`` (EmoBank ``part``
    sentences rated at or above 3.5 / at or below 2.5 for arousal), and, given ``stories``,
    the story-set agreement. Missing data leave a note instead of numbers."""
    rated = emobank_sets(settings, part)
    section: dict[str, Any] = {
        "continuous": continuous_report(model, settings, part=part, sets=rated)
    }
    if not model.info.va_axes:
        reason = section["continuous"]["rows"]["model"]["reason"]
        section["matching"] = {"available": False, "reason": reason}
        return section
    try:
        tags = tag_va(gallery.records, load_nrc_vad(settings=settings))
    except StorycueError as exc:
        tags = None
        section["matching"] = {"available": False, "reason": f"no NRC VAD lexicon: {exc}"}
    if tags is not None:
        keep = np.isfinite(tags).all(axis=1)
        vectors = np.asarray(gallery_vectors)[keep]
        quads = [q for q, ok in zip(gallery.quadrants, keep, strict=True) if ok]
        sentences = next(s for s in rated if s.name == "sentences")
        section["matching"] = {
            "available": True,
            "gallery_clips_with_tags": int(keep.sum()),
            "emobank": matching_arousal(
                model,
                vectors,
                quads,
                tags[keep],
                sentences,
                settings,
                high=rescale(HIGH_AROUSAL_RATING),
                low=rescale(LOW_AROUSAL_RATING),
            ),
        }
    if stories is not None:
        section["stories"] = story_report(
            model, settings, stories, gallery_vectors=gallery_vectors,
            gallery_quadrants=gallery.quadrants, gallery_tag_va=tags,
        )  # fmt: skip
    return section


def reading_report(
    settings: Settings,
    model_name: str,
    *,
    part: Part = "test",
    stories: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """``storycue evaluate --reading-only``: the continuous section of one model (and the
    story set's agreement, without a gallery)."""
    model = load_configured_model(settings, model_name)
    result: dict[str, Any] = {
        "model": {
            **model.identity.model_dump(),
            "family": model.info.family,
            "checkpoint_sha256": model.checkpoint_sha256,
        },
        "continuous": continuous_report(model, settings, part=part),
    }
    if stories is not None:
        result["stories"] = story_report(model, settings, stories)
    return result
