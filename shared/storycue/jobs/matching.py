"""Tenant-aware matching of stories to music: one story (search) or many (bulk jobs).

The cue sheets are built exactly as :meth:`storycue.pipeline.engine.Engine.match` builds
them (the tests check both give the same answer); the differences are that searches are
restricted to the catalogues of one tenant, and that many stories are segmented first and
their segments embedded together, in batches of ``settings.batch.text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from storycue.errors import InvalidInputError, NotFoundError, StorycueError
from storycue.jobs.runtime import JobRuntime
from storycue.log import get_logger
from storycue.metrics import time_stage
from storycue.models.emotion import EmotionModel
from storycue.pipeline.cuesheet import CueEmotion, CueSegment, CueSheet, CueTrack
from storycue.pipeline.segment import Segment, segment_story
from storycue.storage.vectors import SearchFilter, VectorHit, VectorStore

log = get_logger(__name__)


@dataclass(frozen=True)
class MatchOptions:
    """What a search or a bulk match job asks for (validated by the caller's schema)."""

    top_k: int = 5
    catalogue: str | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    tags: tuple[str, ...] | None = None


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


def _track(rank: int, hit: VectorHit) -> CueTrack:
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


def match_texts(
    model: EmotionModel,
    vectors: VectorStore,
    texts: Sequence[str],
    *,
    top_k: int,
    flt: SearchFilter | None,
    catalogue: str | None,
    max_chars: int,
) -> list[CueSheet | StorycueError]:
    """Cue sheets of ``texts`` (or, per story, the error that story caused).

    Every story is segmented, all segments are embedded in one pass of the text encoder
    (which batches them), then each segment is searched.
    """
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
    info = model.info
    model_desc = {**info.identity.model_dump(), "family": info.family, "distance": info.distance}
    out: list[CueSheet | StorycueError] = []
    pos = 0
    for text, story in zip(texts, segmented, strict=True):
        if not isinstance(story, list):
            out.append(story)
            continue
        cue_segments: list[CueSegment] = []
        for seg in story:
            vec = embedded[pos]
            pos += 1
            with time_stage("search"):
                hits = vectors.search(model.identity, vec, top_k, flt)
            reading = model.read(vec)
            cue_segments.append(
                CueSegment(
                    index=seg.index,
                    start=seg.start,
                    end=seg.end,
                    tokens=seg.tokens,
                    text=seg.text,
                    emotion=CueEmotion(**reading.to_dict()),
                    tracks=[_track(r + 1, h) for r, h in enumerate(hits)],
                )
            )
        out.append(
            CueSheet(
                model=dict(model_desc),
                catalogue=catalogue,
                story_chars=len(text),
                segments=cue_segments,
            )
        )
    return out


@dataclass(frozen=True)
class SearchScope:
    """Which model and which of a tenant's catalogues a search runs on."""

    model: EmotionModel
    flt: SearchFilter
    catalogue: str | None


def search_scope(
    runtime: JobRuntime, tenant: str, options: MatchOptions, *, check_embedded: bool = True
) -> SearchScope:
    """Resolve a tenant's search: the catalogue(s) and the model their vectors use.

    With a catalogue: that catalogue (:class:`NotFoundError` for a missing one or another
    tenant's) and its active model. Without: every catalogue of the tenant, with the
    default model. With ``check_embedded``, raises :class:`NotFoundError` when nothing is
    embedded there yet (:func:`check_embedded`); a search checks only when it finds nothing.
    Reads only: the model is registered once per process.
    """
    if options.catalogue is not None:
        # Read from the database on every search (1-2 ms): a search answers 503 while the
        # database is down, like every tenant route, instead of depending on a cache's age.
        cat = runtime.tenancy.catalogue(tenant, options.catalogue)
        ids = [cat.id]
        model = runtime.catalogue_model(tenant, cat.id, cached=True)
    else:
        ids = runtime.tenancy.catalogue_ids(tenant)
        if not ids:
            raise NotFoundError("there are no catalogues yet: create one and ingest tracks")
        model = runtime.load_model()
    flt = SearchFilter(
        catalogue_ids=ids,
        min_duration_s=options.min_duration_s,
        max_duration_s=options.max_duration_s,
        tags_any=list(options.tags) if options.tags else None,
    )
    runtime.ensure_registered(model)
    scope = SearchScope(model=model, flt=flt, catalogue=options.catalogue)
    if check_embedded:
        check_embedded_tracks(runtime, scope)
    return scope


def check_embedded_tracks(runtime: JobRuntime, scope: SearchScope) -> None:
    """:class:`NotFoundError` when none of the scope's catalogues has a vector under its
    model (nothing ingested yet, or only with another model)."""
    ids = scope.flt.catalogue_ids
    if runtime.vectors.count(scope.model.identity, SearchFilter(catalogue_ids=ids)) == 0:
        where = f"catalogue {scope.catalogue!r}" if scope.catalogue else "any catalogue"
        key = scope.model.identity.key
        raise NotFoundError(
            f"no tracks of {where} are embedded with {key}: ingest some first",
            detail={"model": key},
        )


def search(runtime: JobRuntime, tenant: str, text: str, options: MatchOptions) -> CueSheet:
    """The cue sheet of one story, searched in the tenant's catalogue(s)."""
    limits = runtime.settings.limits
    if not 1 <= options.top_k <= limits.max_top_k:
        raise InvalidInputError(f"top_k must be between 1 and {limits.max_top_k}")
    check_story(text, limits.max_story_chars)
    scope = search_scope(runtime, tenant, options, check_embedded=False)
    (sheet,) = match_texts(
        scope.model,
        runtime.vectors,
        [text],
        top_k=options.top_k,
        flt=scope.flt,
        catalogue=scope.catalogue,
        max_chars=limits.max_story_chars,
    )
    if isinstance(sheet, StorycueError):
        raise sheet
    if not any(seg.tracks for seg in sheet.segments):
        # Nothing found: say why when nothing is embedded (the count costs a few ms at 100k
        # tracks, so a search that finds tracks never pays it).
        check_embedded_tracks(runtime, scope)
    return sheet
