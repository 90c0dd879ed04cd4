"""Matching stories to music: the steps every match path shares.

The CLI engine's :meth:`~storycue.pipeline.engine.Engine.match`, the gateway's search and
the bulk match jobs (:mod:`storycue.jobs.matching`) all build their cue sheets with
:func:`match_texts`: each story is checked and segmented into scenes, every scene of every
story is embedded in one pass of the text encoder (which batches them), then each scene
is searched and read. With ``distinct``, a cue sheet cues each track at most once: scenes
take their tracks in story order, a later scene its best tracks not cued before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from storycue.errors import InvalidInputError, StorycueError
from storycue.identity import ModelIdentity
from storycue.metrics import time_stage
from storycue.models.emotion import EmotionModel
from storycue.pipeline.cuesheet import CueEmotion, CueSegment, CueSheet, CueTrack
from storycue.pipeline.segment import Segment, segment_story
from storycue.storage.vectors import MAX_TOP_K, SearchFilter, VectorHit, VectorStore


def check_story(text: str, max_chars: int) -> None:
    """Raise :class:`InvalidInputError` for a story that is not text or too long."""
    if not isinstance(text, str):
        raise InvalidInputError("story text must be a string")
    if len(text) > max_chars:
        raise InvalidInputError(
            f"story is {len(text)} characters, over the {max_chars} limit",
            detail={"chars": len(text), "max_chars": max_chars},
        )
    if "\x00" in text:
        raise InvalidInputError("story text contains NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates (e.g. "\ud800" JSON escapes)
        raise InvalidInputError(
            f"story text is not valid Unicode (lone surrogate at {exc.start})",
            detail={"position": exc.start},
        ) from exc


def check_top_k(top_k: int, max_top_k: int) -> None:
    """Raise :class:`InvalidInputError` unless ``1 <= top_k <= max_top_k``."""
    if not 1 <= top_k <= max_top_k:
        raise InvalidInputError(f"top_k must be between 1 and {max_top_k}")


def cue_track(rank: int, hit: VectorHit) -> CueTrack:
    """One search hit as a cue-sheet track (from the payload its ingest stored)."""
    p = hit.payload
    return CueTrack(
        rank=rank,
        track_id=int(p["track_id"]),
        uri=str(p.get("uri", "")),
        title=p.get("title"),
        artist=p.get("artist"),
        duration_s=p.get("duration_s"),
        score=hit.similarity,
        distance=hit.score if hit.distance == "euclid" else None,
        valence=p.get("valence"),
        arousal=p.get("arousal"),
        tags=list(p.get("tags") or []),
    )


def _track_key(hit: VectorHit) -> int:
    return int(hit.payload["track_id"])


def distinct_hits(
    identity: ModelIdentity,
    vectors: VectorStore,
    embedded: np.ndarray,
    found: Sequence[Sequence[VectorHit]],
    *,
    top_k: int,
    fetched: int,
    flt: SearchFilter | None,
) -> list[list[VectorHit]]:
    """Each scene's top-k tracks, none cued by an earlier scene of the same story.

    ``found`` holds each scene's first ``fetched`` hits. A scene that runs short of unused
    tracks among them (and may have more) is searched again for ``top_k`` plus the number
    of tracks already cued, which is enough for ``top_k`` unused ones whenever the
    catalogue has them; a scene gets fewer only when the filtered catalogue runs out, or
    when more than a search's ``MAX_TOP_K`` hits would be needed (a story of over 100
    scenes at top-k 100).
    """
    used: set[int] = set()
    out: list[list[VectorHit]] = []
    for vec, hits in zip(embedded, found, strict=True):
        fresh = [h for h in hits if _track_key(h) not in used]
        if len(fresh) < top_k and len(hits) >= fetched:
            k = min(top_k + len(used), MAX_TOP_K)
            (hits,) = vectors.search_batch(identity, vec[None, :], k, flt)
            fresh = [h for h in hits if _track_key(h) not in used]
        chosen = fresh[:top_k]
        used.update(_track_key(h) for h in chosen)
        out.append(chosen)
    return out


def model_description(model: EmotionModel) -> dict[str, Any]:
    """What a cue sheet records of the model that made it."""
    info = model.info
    return {**info.identity.model_dump(), "family": info.family, "distance": info.distance}


def match_texts(
    model: EmotionModel,
    vectors: VectorStore,
    texts: Sequence[str],
    *,
    top_k: int,
    flt: SearchFilter | None,
    catalogue: str | None,
    max_chars: int,
    distinct: bool = False,
) -> list[CueSheet | StorycueError]:
    """Cue sheets of ``texts`` (or, per story, the error that story caused); with
    ``distinct``, no track twice in one cue sheet (:func:`distinct_hits`)."""
    encoder = model.text_encoder
    segmented: list[list[Segment] | StorycueError] = []
    for text in texts:
        try:
            check_story(text, max_chars)
            with time_stage("segment"):
                segs = segment_story(text, encoder.count_tokens, encoder.max_tokens)
            segmented.append(segs)
        except StorycueError as exc:
            segmented.append(exc)
    flat = [seg.text for segs in segmented if isinstance(segs, list) for seg in segs]
    if flat:
        with time_stage("text_encoder"):
            embedded = model.embed_text(flat)
    else:
        embedded = np.zeros((0, model.identity.dim), np.float32)
    # Every segment's search in one call: a backend with a batch API plans them together
    # (Qdrant Edge: a third of the CPU of one search per segment). A distinct cue sheet
    # fetches twice as many, so that most scenes find their unused tracks in one search.
    fetched = 2 * top_k if distinct else top_k
    with time_stage("search"):
        found = vectors.search_batch(model.identity, embedded, fetched, flt) if flat else []
    described = model_description(model)
    out: list[CueSheet | StorycueError] = []
    pos = 0
    for text, story in zip(texts, segmented, strict=True):
        if not isinstance(story, list):
            out.append(story)
            continue
        n = len(story)
        scene_hits: Sequence[Sequence[VectorHit]] = found[pos : pos + n]
        if distinct:
            with time_stage("search"):
                scene_hits = distinct_hits(
                    model.identity,
                    vectors,
                    embedded[pos : pos + n],
                    scene_hits,
                    top_k=top_k,
                    fetched=fetched,
                    flt=flt,
                )
        cue_segments: list[CueSegment] = []
        for seg, vec, hits in zip(story, embedded[pos : pos + n], scene_hits, strict=True):
            reading = model.read(vec)
            cue_segments.append(
                CueSegment(
                    index=seg.index,
                    start=seg.start,
                    end=seg.end,
                    tokens=seg.tokens,
                    text=seg.text,
                    emotion=CueEmotion(**reading.to_dict()),
                    tracks=[cue_track(r + 1, h) for r, h in enumerate(hits)],
                )
            )
        pos += n
        out.append(
            CueSheet(
                model=dict(described),
                catalogue=catalogue,
                story_chars=len(text),
                distinct=distinct,
                segments=cue_segments,
            )
        )
    return out
