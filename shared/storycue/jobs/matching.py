"""Tenant-aware matching of stories to music: one story (search) or many (bulk jobs).

The cue sheets come from :func:`storycue.pipeline.match.match_texts`, the one match path
(the CLI engine calls it too); what this module adds is the scope: a search runs on the
catalogues of one tenant with each catalogue's active model, and it only reads (the model
was registered once per process by :meth:`storycue.context.ProcessContext.ensure_registered`).
"""

from __future__ import annotations

from dataclasses import dataclass

from storycue.context import ProcessContext
from storycue.errors import NotFoundError, StorycueError
from storycue.log import get_logger
from storycue.models.emotion import EmotionModel
from storycue.pipeline.cuesheet import CueSheet
from storycue.pipeline.match import check_story, check_top_k, match_texts
from storycue.storage.vectors import SearchFilter

log = get_logger(__name__)


@dataclass(frozen=True)
class MatchOptions:
    """What a search or a bulk match job asks for (validated by the caller's schema)."""

    top_k: int = 5
    catalogue: str | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    tags: tuple[str, ...] | None = None
    #: Cue each track at most once per cue sheet (:func:`~storycue.pipeline.match.distinct_hits`).
    distinct: bool = False


@dataclass(frozen=True)
class SearchScope:
    """Which model and which of a tenant's catalogues a search runs on."""

    model: EmotionModel
    flt: SearchFilter
    catalogue: str | None


def search_scope(
    context: ProcessContext, tenant: str, options: MatchOptions, *, check_embedded: bool = True
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
        cat = context.tenancy.catalogue(tenant, options.catalogue)
        ids = [cat.id]
        model = context.catalogue_model(tenant, cat.id, cached=True)
    else:
        ids = context.tenancy.catalogue_ids(tenant)
        if not ids:
            raise NotFoundError("there are no catalogues yet: create one and ingest tracks")
        model = context.load_model()
    flt = SearchFilter(
        catalogue_ids=ids,
        min_duration_s=options.min_duration_s,
        max_duration_s=options.max_duration_s,
        tags_any=list(options.tags) if options.tags else None,
    )
    context.ensure_registered(model)
    scope = SearchScope(model=model, flt=flt, catalogue=options.catalogue)
    if check_embedded:
        check_embedded_tracks(context, scope)
    return scope


def check_embedded_tracks(context: ProcessContext, scope: SearchScope) -> None:
    """:class:`NotFoundError` when none of the scope's catalogues has a vector under its
    model (nothing ingested yet, or only with another model)."""
    ids = scope.flt.catalogue_ids
    if context.vectors.count(scope.model.identity, SearchFilter(catalogue_ids=ids)) == 0:
        where = f"catalogue {scope.catalogue!r}" if scope.catalogue else "any catalogue"
        key = scope.model.identity.key
        raise NotFoundError(
            f"no tracks of {where} are embedded with {key}: ingest some first",
            detail={"model": key},
        )


def search(context: ProcessContext, tenant: str, text: str, options: MatchOptions) -> CueSheet:
    """The cue sheet of one story, searched in the tenant's catalogue(s)."""
    limits = context.settings.limits
    check_top_k(options.top_k, limits.max_top_k)
    check_story(text, limits.max_story_chars)
    scope = search_scope(context, tenant, options, check_embedded=False)
    (sheet,) = match_texts(
        scope.model,
        context.vectors,
        [text],
        top_k=options.top_k,
        flt=scope.flt,
        catalogue=scope.catalogue,
        max_chars=limits.max_story_chars,
        distinct=options.distinct,
    )
    if isinstance(sheet, StorycueError):
        raise sheet
    if not any(seg.tracks for seg in sheet.segments):
        # Nothing found: say why when nothing is embedded (the count costs a few ms at 100k
        # tracks, so a search that finds tracks never pays it).
        check_embedded_tracks(context, scope)
    return sheet
