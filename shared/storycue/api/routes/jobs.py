"""Jobs: bulk matching (JSON or JSON-lines upload), evaluation, training; status,
results and cancellation."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import IO, Annotated

from fastapi import APIRouter, Body, File, Form, Query, UploadFile, status
from pydantic import ValidationError

from storycue.api.deps import AppSettings, Context, Dispatcher, JobIdPath, Tenant
from storycue.api.errors import ERROR_RESPONSES, JOB_LIMIT_RESPONSES
from storycue.api.schemas import JobOut, JobPage, MatchJobRequest, ResultOut, ResultPage
from storycue.context import ProcessContext
from storycue.errors import InvalidInputError, NotFoundError, StorycueError, TextDecodeError
from storycue.jobs.dispatch import JobDispatcher
from storycue.jobs.params import EvaluateParams, MatchParams, TrainRequest, train_params
from storycue.jobs.submit import submit_evaluate, submit_match, submit_train
from storycue.jobs.switch import settle_switch
from storycue.log import get_logger
from storycue.storage.jobs import (
    JOB_CURSOR,
    NUMBER_CURSOR,
    InvalidTransitionError,
    Job,
    JobKind,
    JobState,
)

log = get_logger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

UPLOAD_PATH = "/v1/jobs/match/upload"


def dispatch_job(rt: ProcessContext, dispatcher: JobDispatcher, job: Job) -> Job:
    """Hand a created job to the dispatcher; a job that cannot be dispatched is failed."""
    try:
        dispatcher.dispatch(job)
    except Exception as exc:
        code = exc.code if isinstance(exc, StorycueError) else "dispatch_failed"
        current = rt.jobs.get(job.tenant, job.id)
        if current is not None and current.state == "queued":
            with contextlib.suppress(InvalidTransitionError):
                rt.jobs.fail(job.tenant, job.id, code, f"the job could not be dispatched: {exc}")
        raise
    return rt.jobs.require(job.tenant, job.id)


@router.post(
    "/match",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a bulk match job (JSON)",
    responses=JOB_LIMIT_RESPONSES,
)
def post_match_job(
    body: MatchJobRequest,
    tenant: Tenant,
    rt: Context,
    settings: AppSettings,
    dispatcher: Dispatcher,
) -> JobOut:
    """Match many stories asynchronously; poll ``GET /v1/jobs/{id}`` and page through
    ``GET /v1/jobs/{id}/results`` (one result per story, in the order given)."""
    params = MatchParams.model_validate(body.model_dump(exclude={"stories"}))
    job = submit_match(rt, tenant, ((s.id, s.text) for s in body.stories), params, settings)
    return JobOut.of(dispatch_job(rt, dispatcher, job))


def _jsonl_stories(stream: IO[bytes]) -> Iterator[tuple[str, str]]:
    for lineno, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise TextDecodeError(
                f"line {lineno} is not UTF-8 text", detail={"line": lineno}
            ) from exc
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"line {lineno} is not valid JSON: {exc.msg}", detail={"line": lineno}
            ) from exc
        except RecursionError as exc:  # nesting deeper than the parser's recursion limit
            raise InvalidInputError(
                f"line {lineno} is nested too deeply", detail={"line": lineno}
            ) from exc
        if not isinstance(obj, dict) or set(obj) != {"id", "text"}:
            raise InvalidInputError(
                f'line {lineno} must be an object with exactly "id" and "text"',
                detail={"line": lineno},
            )
        story_id, text = obj["id"], obj["text"]
        if isinstance(story_id, int) and not isinstance(story_id, bool):
            story_id = str(story_id)
        if not isinstance(story_id, str) or not isinstance(text, str):
            raise InvalidInputError(
                f'line {lineno}: "id" must be a string (or integer) and "text" a string',
                detail={"line": lineno},
            )
        yield story_id, text


@router.post(
    "/match/upload",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a bulk match job (JSON-lines upload)",
    responses=JOB_LIMIT_RESPONSES,
)
def post_match_upload(
    file: Annotated[
        UploadFile, File(description='JSON lines, one {"id": ..., "text": ...} per story.')
    ],
    tenant: Tenant,
    rt: Context,
    settings: AppSettings,
    dispatcher: Dispatcher,
    top_k: Annotated[int, Form(ge=1)] = 5,
    catalogue: Annotated[str | None, Form(min_length=1, max_length=200)] = None,
    min_duration_s: Annotated[float | None, Form(ge=0, le=86_400)] = None,
    max_duration_s: Annotated[float | None, Form(ge=0, le=86_400)] = None,
    tags: Annotated[str | None, Form(description="Comma-separated tags.")] = None,
    distinct: Annotated[
        bool, Form(description="Cue each track at most once per cue sheet.")
    ] = False,
) -> JobOut:
    """Like ``POST /v1/jobs/match`` with the stories in an uploaded JSON-lines file
    (up to ``service.max_upload_bytes``)."""
    tag_list = [t.strip() for t in tags.split(",") if t.strip()] if tags else None
    try:
        params = MatchParams(
            top_k=top_k,
            catalogue=catalogue,
            min_duration_s=min_duration_s,
            max_duration_s=max_duration_s,
            tags=tag_list or None,
            distinct=distinct,
        )
    except ValidationError as exc:
        raise InvalidInputError(
            f"invalid job options: {exc.errors()[0]['msg']}",
            detail={"errors": [str(e["msg"]) for e in exc.errors()]},
        ) from exc
    job = submit_match(rt, tenant, _jsonl_stories(file.file), params, settings)
    return JobOut.of(dispatch_job(rt, dispatcher, job))


@router.post(
    "/evaluate",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit an evaluation job",
    responses=JOB_LIMIT_RESPONSES,
)
def post_evaluate_job(
    body: EvaluateParams, tenant: Tenant, rt: Context, dispatcher: Dispatcher
) -> JobOut:
    """Score a model with the evaluation harness (labelled query set against storycue's
    4Q split); the report is the job's one result."""
    job = submit_evaluate(rt, tenant, body)
    return JobOut.of(dispatch_job(rt, dispatcher, job))


@router.post(
    "/train",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a training job",
    responses=JOB_LIMIT_RESPONSES,
)
def post_train_job(
    body: Annotated[TrainRequest, Body()], tenant: Tenant, rt: Context, dispatcher: Dispatcher
) -> JobOut:
    """Train a model family on the cached frozen features; the new model's identity is
    the job's one result, and it is listed by ``GET /v1/models`` afterwards."""
    job = submit_train(rt, tenant, train_params(body))
    return JobOut.of(dispatch_job(rt, dispatcher, job))


@router.get("", response_model=JobPage, summary="List your jobs")
def list_jobs(
    tenant: Tenant,
    rt: Context,
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=JOB_CURSOR, description="next_cursor of the previous page.")
    ] = None,
) -> JobPage:
    """Your jobs, newest first, optionally of one state or kind."""
    jobs, next_cursor = rt.jobs.list_jobs(
        tenant, state=state, kind=kind, limit=limit, cursor=cursor
    )
    return JobPage(jobs=[JobOut.of(j) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, summary="A job's state and progress")
def get_job(job_id: JobIdPath, tenant: Tenant, rt: Context) -> JobOut:
    return JobOut.of(rt.jobs.require(tenant, job_id))


@router.get("/{job_id}/results", response_model=ResultPage, summary="A page of a job's results")
def get_results(
    job_id: JobIdPath,
    tenant: Tenant,
    rt: Context,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=NUMBER_CURSOR, description="next_cursor of the previous page.")
    ] = None,
) -> ResultPage:
    """Results ordered by item index; pass ``next_cursor`` back as ``cursor``. Results
    appear while the job runs."""
    job = rt.jobs.require(tenant, job_id)
    results, next_cursor = rt.jobs.results(tenant, job_id, limit=limit, cursor=cursor)
    return ResultPage(
        job_id=job.id,
        state=job.state,
        results=[ResultOut.of(r) for r in results],
        next_cursor=next_cursor,
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job",
    responses={409: {"description": "The job has already finished."}},
)
def cancel_job(job_id: JobIdPath, tenant: Tenant, rt: Context, dispatcher: Dispatcher) -> JobOut:
    """A queued job is cancelled at once; a running one stops between batches (its
    ``cancel_requested`` is true until then). A finished job answers 409."""
    job = rt.jobs.request_cancel(tenant, job_id)
    try:
        dispatcher.cancel(job_id)
    except Exception as exc:  # the database already records the cancel
        log.warning("dispatcher cancel failed", job_id=job_id, error=str(exc))
    if job.terminal and job.kind == "ingest" and job.catalogue_id is not None:
        with contextlib.suppress(NotFoundError):  # a model switch it was re-embedding ends
            settle_switch(rt, tenant, job.catalogue_id)
    return JobOut.of(job)
