"""Creating jobs: validate what is asked against the settings and the tenant's data, then
store the job with its inputs (queued). The caller dispatches it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from storycue.config import Settings
from storycue.context import ProcessContext
from storycue.errors import InvalidInputError, ModelMismatchError
from storycue.jobs.params import EvaluateParams, IngestParams, MatchParams, TrainParams
from storycue.jobs.tasks import model_name_for
from storycue.models.checkpoints import find_checkpoint, find_model, trained_checkpoint_path
from storycue.models.emotion import EmotionModel
from storycue.pipeline.match import check_story
from storycue.storage.jobs import Job, JobLimits

MAX_STORY_ID = 200


def job_limits(settings: Settings) -> JobLimits:
    """The per-tenant limits of unfinished jobs (``settings.limits``)."""
    lim = settings.limits
    return JobLimits(
        max_active=lim.max_active_jobs,
        by_kind={str(k): n for k, n in lim.max_active_jobs_by_kind.items()},
        retry_after_s=lim.job_limit_retry_after_s,
    )


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _checked_stories(
    stories: Iterable[tuple[str, str]], settings: Settings
) -> Iterator[tuple[str, str]]:
    limit = settings.service.max_stories_per_job
    n = 0
    for story_id, text in stories:
        if n >= limit:
            raise InvalidInputError(
                f"a job holds at most {limit} stories (STORYCUE_SERVICE__MAX_STORIES_PER_JOB)",
                detail={"max_stories": limit},
            )
        if not isinstance(story_id, str) or not 1 <= len(story_id) <= MAX_STORY_ID:
            raise InvalidInputError(
                f"story {n}: id must be a string of 1 to {MAX_STORY_ID} characters",
                detail={"index": n},
            )
        if "\x00" in story_id or not _utf8(story_id):
            raise InvalidInputError(
                f"story {n}: id must be UTF-8 text without NUL characters",
                detail={"index": n},
            )
        try:
            check_story(text, settings.limits.max_story_chars)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"story {n} ({story_id}): {exc.message}", detail={"index": n}
            ) from exc
        if not text.strip():
            raise InvalidInputError(
                f"story {n} ({story_id}) is empty", detail={"index": n, "id": story_id}
            )
        n += 1
        yield story_id, text
    if n == 0:
        raise InvalidInputError("a match job needs at least one story")


def submit_match(
    rt: ProcessContext,
    tenant: str,
    stories: Iterable[tuple[str, str]],
    params: MatchParams,
    settings: Settings,
) -> Job:
    """A queued bulk match job of ``stories`` (``(id, text)`` pairs, read lazily)."""
    if params.top_k > settings.limits.max_top_k:
        raise InvalidInputError(
            f"top_k must be between 1 and {settings.limits.max_top_k}",
            detail={"field": "top_k"},
        )
    catalogue_id = None
    if params.catalogue is not None:
        catalogue_id = rt.tenancy.catalogue(tenant, params.catalogue).id
    # A job stores ``distinct`` only when it asks for it: workers of the previous release,
    # which refuse unknown parameters, still run every ordinary job during a rolling upgrade.
    stored = params.model_dump(mode="json", exclude=None if params.distinct else {"distinct"})
    return rt.jobs.create(
        tenant,
        "match",
        stored,
        items=_checked_stories(stories, settings),
        catalogue_id=catalogue_id,
        limits=job_limits(settings),
    )


def submit_ingest(
    rt: ProcessContext, tenant: str, params: IngestParams, model: EmotionModel | None = None
) -> Job:
    """A queued ingest job of every registered track of the catalogue that needs it
    (not ingested yet, failed before, or lacking a vector of ``model``: by default the
    active model; a model switch's re-embed job passes the new one)."""
    cat = rt.tenancy.catalogue(tenant, params.catalogue)
    if model is None:
        model = rt.catalogue_model(tenant, cat.id)
    record = rt.register(model)
    sources = rt.tenancy.sources_to_ingest(tenant, cat.id, record.id)
    return rt.jobs.create(
        tenant,
        "ingest",
        params.model_dump(mode="json"),
        items=[(str(src.id), src.uri) for src in sources],
        catalogue_id=cat.id,
        model=model.identity,
        limits=job_limits(rt.settings),
    )


def submit_evaluate(rt: ProcessContext, tenant: str, params: EvaluateParams) -> Job:
    """A queued evaluation job (the model must exist)."""
    if params.version is not None:
        find_model(rt.settings, params.model, params.version)
    else:
        find_checkpoint(params.model, rt.settings)
    return rt.jobs.create(
        tenant, "evaluate", params.model_dump(mode="json"), total=1, limits=job_limits(rt.settings)
    )


def submit_train(rt: ProcessContext, tenant: str, params: TrainParams) -> Job:
    """A queued training job (the model name and version must be new)."""
    name = model_name_for(params)
    if trained_checkpoint_path(rt.settings, name, params.version).exists():
        raise ModelMismatchError(
            f"a model {name}@{params.version} already exists; train under another version",
            detail={"name": name, "version": params.version},
        )
    return rt.jobs.create(
        tenant, "train", params.model_dump(mode="json"), total=1, limits=job_limits(rt.settings)
    )
