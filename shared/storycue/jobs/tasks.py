"""The job functions: what a worker runs for a job id (and, for match jobs, item indexes).

Each is a pure function of ``(job id, items, settings)``: it opens its stores through
:func:`storycue.context.get_context`, reads its inputs from the database, writes one
result per item and updates the job's state and progress there. All are idempotent and
safe to re-run after a crash: items that already have a result are skipped, results are
upserted, tracks are identified by content and vectors by track.

Failure policy: a problem with the job itself (invalid parameters, a deleted catalogue, a
missing model or dataset) fails the job with that error's code; a problem with one item
(an empty story, an undecodable file) is that item's result (``ok = false``) and the job
goes on; anything else (the database or vector store down) propagates, so that the
caller retries the task (Celery) or fails the job (:class:`InProcessDispatcher`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from storycue.config import Settings, get_settings
from storycue.context import ProcessContext, get_context
from storycue.errors import InvalidInputError, ModelMismatchError, NotFoundError, StorycueError
from storycue.jobs.ingest import PreparedSource, SourcePrefetcher, ingest_source
from storycue.jobs.matching import MatchOptions, search_scope
from storycue.jobs.params import EvaluateParams, IngestParams, MatchParams, TrainParams
from storycue.jobs.switch import promote, sync_alias
from storycue.log import get_logger
from storycue.models.checkpoints import trained_checkpoint_path
from storycue.models.emotion import EmotionModel
from storycue.pipeline.match import match_texts
from storycue.storage.jobs import (
    InvalidTransitionError,
    ItemResult,
    Job,
    JobItem,
    JobNotRunningError,
)
from storycue.storage.records import Catalogue, ModelRecord
from storycue.storage.tenancy import TrackSource

if TYPE_CHECKING:
    from storycue.training.run import TrainOptions

log = get_logger(__name__)


def _settings(settings: Settings | None) -> Settings:
    return settings or get_settings()


def _fail(rt: ProcessContext, job: Job, code: str, message: str) -> None:
    try:
        rt.jobs.fail(job.tenant, job.id, code, message)
    except InvalidTransitionError:
        log.info("job already finished; failure not recorded", job_id=job.id, code=code)


def _cancel(rt: ProcessContext, job: Job) -> None:
    with contextlib.suppress(InvalidTransitionError):
        rt.jobs.cancel(job.tenant, job.id)


def _begin(rt: ProcessContext, job_id: str, *, shared: bool, redelivered: bool) -> Job | None:
    """The job, running, when this caller should work on it; ``None`` when it should not.

    A queued job is started with a compare-and-set (one caller wins). A job already
    running is worked on by chunks of a match job (``shared``) and by a redelivered task
    (its first worker was lost); anyone else leaves it to the worker that started it.
    """
    tenant = rt.jobs.tenant_of(job_id)
    if tenant is None:
        log.warning("job does not exist; task dropped", job_id=job_id)
        return None
    job = rt.jobs.require(tenant, job_id)
    if job.state == "queued":
        if not rt.jobs.start(tenant, job_id) and not shared:
            return None
        job = rt.jobs.require(tenant, job_id)
    elif job.state == "running" and not (shared or redelivered):
        log.info("job is already running elsewhere; task dropped", job_id=job_id)
        return None
    if job.state != "running":
        return None
    if job.cancel_requested:
        _cancel(rt, job)
        return None
    return job


def fail_job(job_id: str, code: str, message: str, settings: Settings | None = None) -> None:
    """Mark a job failed (a task out of retries, a dead-lettered message)."""
    rt = get_context(_settings(settings))
    tenant = rt.jobs.tenant_of(job_id)
    if tenant is None:
        return
    job = rt.jobs.require(tenant, job_id)
    if not job.terminal:
        _fail(rt, job, code, message)


def _params(rt: ProcessContext, job: Job, model: type[Any]) -> Any:
    try:
        return model.model_validate(job.params)
    except ValidationError as exc:
        _fail(rt, job, "invalid_params", f"the job's parameters are invalid: {exc}")
        return None


def run_match_items(
    job_id: str, item_indexes: Sequence[int] | None = None, settings: Settings | None = None
) -> None:
    """Match the stories of a bulk match job at ``item_indexes`` (default: all).

    The segments of up to ``settings.queue.job_chunk_size`` stories (one chunk) go to one
    ``embed_text`` call, which sorts them by token length and cuts them into batches of
    ``settings.batch.text``, so batches pad little; a cancel request is honoured between
    those groups. The job succeeds when its last item has a result, whichever chunk
    writes it.
    """
    s = _settings(settings)
    rt = get_context(s)
    job = _begin(rt, job_id, shared=True, redelivered=True)
    if job is None:
        return
    params = _params(rt, job, MatchParams)
    if params is None:
        return
    try:
        if params.top_k > s.limits.max_top_k:
            raise InvalidInputError(f"top_k must be between 1 and {s.limits.max_top_k}")
        scope = search_scope(
            rt,
            job.tenant,
            MatchOptions(
                top_k=params.top_k,
                catalogue=params.catalogue,
                min_duration_s=params.min_duration_s,
                max_duration_s=params.max_duration_s,
                tags=tuple(params.tags) if params.tags else None,
                distinct=params.distinct,
            ),
        )
    except StorycueError as exc:
        _fail(rt, job, exc.code, exc.message)
        return
    if job.model is None:
        rt.jobs.set_model(job.tenant, job.id, scope.model.identity)
    wanted = list(range(job.progress_total)) if item_indexes is None else list(item_indexes)
    done = rt.jobs.done_indexes(job.tenant, job.id, wanted)
    todo = sorted(set(wanted) - done)
    group = max(1, s.queue.job_chunk_size)
    for start in range(0, len(todo), group):
        if rt.jobs.cancel_requested(job.tenant, job.id):
            _cancel(rt, job)
            return
        items = rt.jobs.items(job.tenant, job.id, todo[start : start + group])
        sheets = match_texts(
            scope.model,
            rt.vectors,
            [it.text for it in items],
            top_k=params.top_k,
            flt=scope.flt,
            catalogue=scope.catalogue,
            max_chars=s.limits.max_story_chars,
            distinct=params.distinct,
        )
        results: list[ItemResult] = []
        for item, sheet in zip(items, sheets, strict=True):
            if isinstance(sheet, StorycueError):
                error = {"code": sheet.code, "message": sheet.message}
                results.append(
                    ItemResult(item.index, {"id": item.item_id, "error": error}, ok=False)
                )
            else:
                cue = {"id": item.item_id, "cue_sheet": sheet.model_dump(mode="json")}
                results.append(ItemResult(item.index, cue))
        try:
            # One transaction for the group's results, not one per story.
            rt.jobs.record_results(job.tenant, job.id, results)
        except JobNotRunningError:
            log.info("job stopped while matching; chunk abandoned", job_id=job.id)
            return
    final = rt.jobs.finish_if_complete(job.tenant, job.id)
    log.info(
        "match chunk done",
        job_id=job.id,
        items=len(todo),
        progress=f"{final.progress_done}/{final.progress_total}",
        state=final.state,
    )


def run_ingest(job_id: str, settings: Settings | None = None, *, redelivered: bool = False) -> None:
    """Ingest the registered tracks listed in an ingest job (one result per track)."""
    s = _settings(settings)
    rt = get_context(s)
    job = _begin(rt, job_id, shared=False, redelivered=redelivered)
    if job is None:
        return
    params = _params(rt, job, IngestParams)
    if params is None:
        return
    try:
        if job.catalogue_id is None:
            raise NotFoundError(f"catalogue {params.catalogue!r} was deleted")
        cat = rt.tenancy.catalogue_by_id(job.tenant, job.catalogue_id)
        if params.reembed:
            switch = rt.tenancy.model_switch(job.tenant, cat.id)
            if switch.job_id != job.id or switch.pending is None:
                log.info("re-embed job no longer owns the switch; cancelled", job_id=job.id)
                _cancel(rt, job)
                return
            model = rt.load_model_version(switch.pending.name, switch.pending.version)
        else:
            model = rt.catalogue_model(job.tenant, cat.id)
        record = rt.register(model)
    except StorycueError as exc:
        _fail(rt, job, exc.code, exc.message)
        if params.reembed and job.catalogue_id is not None:
            with contextlib.suppress(NotFoundError):
                rt.tenancy.clear_pending(job.tenant, job.catalogue_id, job.id)
        return
    rt.jobs.set_model(job.tenant, job.id, model.identity)
    items = rt.jobs.items(job.tenant, job.id)
    done = rt.jobs.done_indexes(job.tenant, job.id)
    counts = {"embedded": 0, "already_present": 0, "failed": 0}
    pending = [item for item in items if item.index not in done]
    try:
        with SourcePrefetcher(rt, s, record, cat) as prefetch:
            for item, found, fut in _one_ahead(rt, job.tenant, cat.id, pending, prefetch):
                if rt.jobs.cancel_requested(job.tenant, job.id):
                    _cancel(rt, job)
                    if params.reembed:
                        rt.tenancy.clear_pending(job.tenant, cat.id, job.id)
                    return
                if isinstance(found, NotFoundError):
                    rt.jobs.record_result(
                        job.tenant,
                        job.id,
                        item.index,
                        {
                            "source_id": int(item.item_id),
                            "uri": item.text,
                            "outcome": "failed",
                            "track_id": None,
                            "error": {"code": found.code, "message": "the track was deleted"},
                        },
                        ok=False,
                    )
                    continue
                outcome = ingest_source(rt, s, model, record, cat, found, prepared=fut)
                counts[outcome.outcome] += 1
                rt.jobs.record_result(
                    job.tenant, job.id, item.index, outcome.to_dict(), ok=outcome.ok
                )
        if params.reembed:
            _reembed_stragglers(rt, s, job, cat, model, record, counts)
    except JobNotRunningError:
        log.info("job stopped while ingesting", job_id=job.id)
        if params.reembed:
            rt.tenancy.clear_pending(job.tenant, cat.id, job.id)
        return
    if params.reembed:
        _finish_reembed(rt, job, cat, model, counts)
        return
    final = rt.jobs.finish_if_complete(job.tenant, job.id)
    if final.state == "succeeded" and rt.tenancy.model_switch(job.tenant, cat.id).active in (
        None,
        record,
    ):
        sync_alias(rt, cat.id, model.identity)
    log.info("ingest job done", job_id=job.id, state=final.state, **counts)


#: An ingest job's item, its source (or why it is gone) and the future of its preparation.
Ahead = tuple[JobItem, TrackSource | NotFoundError, Future[PreparedSource] | None]


def _one_ahead(
    rt: ProcessContext,
    tenant: str,
    catalogue_id: int,
    items: Sequence[JobItem],
    prefetch: SourcePrefetcher,
) -> Iterator[Ahead]:
    """Each item with its source (or why it is gone) and the future of its preparation,
    the *next* item's preparation already submitted when an item is handed out: the next
    track is fetched and decoded on the prefetcher's thread while this one goes through the
    model."""

    def start(item: JobItem) -> Ahead:
        try:
            found: TrackSource | NotFoundError = rt.tenancy.source(
                tenant, catalogue_id, int(item.item_id)
            )
        except NotFoundError as exc:
            found = exc
        fut = prefetch.submit(found) if isinstance(found, TrackSource) else None
        return item, found, fut

    ahead: deque[Ahead] = deque()
    upcoming = iter(items)
    first = next(upcoming, None)
    if first is not None:
        ahead.append(start(first))
    while ahead:
        current = ahead.popleft()
        following = next(upcoming, None)
        if following is not None:
            ahead.append(start(following))
        yield current


def _reembed_stragglers(
    rt: ProcessContext,
    s: Settings,
    job: Job,
    cat: Catalogue,
    model: EmotionModel,
    record: ModelRecord,
    counts: dict[str, int],
) -> None:
    """Embed under the new model the tracks ingested (under the active model) since the
    re-embed job was created, so that promotion leaves no searchable track behind."""
    for source in rt.tenancy.sources_to_ingest(job.tenant, cat.id, record.id):
        if source.state != "ingested":
            continue  # never searchable under the active model either
        if rt.jobs.cancel_requested(job.tenant, job.id):
            raise JobNotRunningError(f"job {job.id} was cancelled")
        outcome = ingest_source(rt, s, model, record, cat, source)
        counts[outcome.outcome] += 1
        counts["late_failed"] = counts.get("late_failed", 0) + int(not outcome.ok)


def _finish_reembed(
    rt: ProcessContext, job: Job, cat: Catalogue, model: EmotionModel, counts: dict[str, int]
) -> None:
    """Promote the pending model when every track has a vector of it; otherwise fail the
    job and drop the switch (the active model stays)."""
    failed = rt.jobs.result_counts(job.tenant, job.id)["failed"] + counts.get("late_failed", 0)
    if failed:
        _fail(
            rt,
            job,
            "reembed_incomplete",
            f"{failed} track(s) could not be embedded with {model.identity.key}; the "
            "catalogue keeps its active model (fix or delete those tracks and switch again)",
        )
        rt.tenancy.clear_pending(job.tenant, cat.id, job.id)
        log.info("re-embed failed; switch dropped", job_id=job.id, failed=failed)
        return
    final = rt.jobs.finish_if_complete(job.tenant, job.id)
    promoted = promote(rt, job.tenant, cat.id, job.id) if final.state == "succeeded" else None
    log.info(
        "re-embed job done",
        job_id=job.id,
        state=final.state,
        promoted=None if promoted is None else promoted.identity.key,
        **counts,
    )


def run_evaluate(
    job_id: str, settings: Settings | None = None, *, redelivered: bool = False
) -> None:
    """Score a model with the evaluation harness; the report is the job's one result."""
    from storycue.evaluation.harness import evaluate, fourq_gallery, load_queries

    s = _settings(settings)
    rt = get_context(s)
    job = _begin(rt, job_id, shared=False, redelivered=redelivered)
    if job is None:
        return
    params = _params(rt, job, EvaluateParams)
    if params is None:
        return
    try:
        model = (
            rt.load_model_version(params.model, params.version)
            if params.version
            else rt.load_model(params.model)
        )
        rt.jobs.set_model(job.tenant, job.id, model.identity)
        queries = load_queries(params.queries, s)
        gallery = fourq_gallery(params.split, model.audio_backbone(), s)
        if rt.jobs.cancel_requested(job.tenant, job.id):
            _cancel(rt, job)
            return
        report = evaluate(
            model,
            queries,
            gallery,
            s,
            mappings=params.mappings,
            diagnostics=params.diagnostics,
        )
    except StorycueError as exc:
        _fail(rt, job, exc.code, exc.message)
        return
    try:
        rt.jobs.record_result(job.tenant, job.id, 0, report)
    except JobNotRunningError:
        return
    rt.jobs.finish_if_complete(job.tenant, job.id)


def train_options(params: TrainParams) -> TrainOptions:
    """The training options of a job: what ``storycue train`` would be given."""
    from storycue.training.run import TrainOptions

    return TrainOptions(
        family=params.family,
        name=params.name,
        version=params.version,
        seed=params.seed,
        max_epochs=params.max_epochs,
        text_sources=list(params.text_sources) if params.text_sources is not None else None,
        music_target=params.music_target,
    )


def model_name_for(params: TrainParams) -> str:
    """The name a training job's model gets."""
    if params.name:
        return params.name
    return "va-regression" if params.family == "va" else params.family


def run_train(job_id: str, settings: Settings | None = None, *, redelivered: bool = False) -> None:
    """Train a model as ``storycue train`` does (:func:`storycue.training.release.train_release`;
    a job neither fine-tunes nor reads the test parts); the checkpoint is saved beside the
    other local models with its model card and registered, and its identity and path are
    the job's one result."""
    # training code is imported when a training job runs, not when the gateway starts
    from storycue.training.release import train_release

    s = _settings(settings)
    rt = get_context(s)
    job = _begin(rt, job_id, shared=False, redelivered=redelivered)
    if job is None:
        return
    params = _params(rt, job, TrainParams)
    if params is None:
        return
    path = trained_checkpoint_path(s, model_name_for(params), params.version)
    try:
        if path.exists() and not redelivered:
            raise ModelMismatchError(
                f"a model {model_name_for(params)}@{params.version} already exists; "
                "train under another version",
            )
        release = train_release(
            s,
            train_options(params),
            evaluate=False,
            output=path,
            keep=lambda _heads: not rt.jobs.cancel_requested(job.tenant, job.id),
        )
        if release is None:
            _cancel(rt, job)
            return
        info, ident = release.heads.info, release.identity
        rt.jobs.set_model(job.tenant, job.id, ident)
        rt.metadata.register_model(
            ident, family=info.family, distance=info.distance, checkpoint_sha256=release.sha256
        )
    except StorycueError as exc:
        _fail(rt, job, exc.code, exc.message)
        return
    result = {
        "model": ident.model_dump(),
        "family": info.family,
        "distance": info.distance,
        "checkpoint_sha256": release.sha256,
        "path": str(path),
    }
    try:
        rt.jobs.record_result(job.tenant, job.id, 0, result)
    except JobNotRunningError:
        return
    rt.jobs.finish_if_complete(job.tenant, job.id)


def match_chunks(job: Job, chunk_size: int) -> list[list[int]]:
    """The item indexes of a match job cut into chunks of ``chunk_size`` (one task each)."""
    if chunk_size < 1:
        raise InvalidInputError("chunk_size must be >= 1")
    n = job.progress_total
    return [list(range(i, min(n, i + chunk_size))) for i in range(0, n, chunk_size)]


def run_job(job: Job, settings: Settings | None = None) -> None:
    """Run a whole job in this thread (match jobs: every chunk in turn)."""
    s = _settings(settings)
    if job.kind == "match":
        chunks = match_chunks(job, s.queue.job_chunk_size) or [[]]
        for chunk in chunks:
            run_match_items(job.id, chunk, s)
    elif job.kind == "ingest":
        run_ingest(job.id, s)
    elif job.kind == "evaluate":
        run_evaluate(job.id, s)
    elif job.kind == "train":
        run_train(job.id, s)
    else:  # pragma: no cover - the database constrains kinds
        raise InvalidInputError(f"unknown job kind {job.kind!r}")
