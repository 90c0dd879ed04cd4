"""The Celery implementation of the gateway's :class:`~storycue.jobs.dispatch.JobDispatcher`.

A bulk match job becomes one ``storycue.match_chunk`` task per chunk of
``Settings.queue.job_chunk_size`` stories on the ``text`` queue; an ingest job one task on
``audio``; evaluation and training jobs one task on ``train``. Inputs stay in the
database: a message carries only the job id (and, for a chunk, its item indexes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

from celery import Celery

from storycue.config import Settings, get_settings
from storycue.errors import InvalidInputError
from storycue.jobs.params import TrackToIngest
from storycue.jobs.tasks import fail_job, match_chunks
from storycue.log import get_logger
from storycue.runtime.celery_app import create_celery_app
from storycue.runtime.names import (
    TASK_EVALUATE_JOB,
    TASK_INGEST_JOB,
    TASK_INGEST_TRACK,
    TASK_MATCH_CHUNK,
    TASK_ROUTES,
    TASK_TRAIN_JOB,
)
from storycue.storage.jobs import Job
from storycue.transient import DependencyUnavailableError, is_transient

log = get_logger(__name__)

_JOB_TASKS = {"ingest": TASK_INGEST_JOB, "evaluate": TASK_EVALUATE_JOB, "train": TASK_TRAIN_JOB}


class CeleryDispatcher:
    """Send jobs to the worker queues through Celery (``Settings.queue.execution=celery``)."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self.app = app or create_celery_app(self.settings)
        self._task_ids: dict[str, list[str]] = {}

    def _send(self, job: Job, task: str, **kwargs: Any) -> str:
        queue = TASK_ROUTES[task]
        try:
            result = self.app.send_task(task, kwargs=kwargs, queue=queue, routing_key=queue)
        except Exception as exc:
            if is_transient(exc):
                raise DependencyUnavailableError(
                    f"the task broker is unavailable: {exc}", detail={"queue": queue}
                ) from exc
            raise
        task_id = str(result.id)
        self._task_ids.setdefault(job.id, []).append(task_id)
        return task_id

    def dispatch(self, job: Job) -> None:
        """Queue the tasks of a freshly created job (never waits for the work).

        When the broker cannot be reached the job is marked failed (code
        ``dependency_unavailable``) and :class:`DependencyUnavailableError` is raised.
        """
        try:
            if job.kind == "match":
                chunks = match_chunks(job, self.settings.queue.job_chunk_size) or [[]]
                for chunk in chunks:
                    self._send(job, TASK_MATCH_CHUNK, job_id=job.id, item_indexes=chunk)
                n = len(chunks)
            elif job.kind in _JOB_TASKS:
                self._send(job, _JOB_TASKS[job.kind], job_id=job.id)
                n = 1
            else:
                raise InvalidInputError(f"unknown job kind {job.kind!r}")
        except DependencyUnavailableError as exc:
            fail_job(job.id, exc.code, exc.message, self.settings)
            raise
        log.info("job dispatched", job_id=job.id, kind=job.kind, tasks=n, mode="celery")

    def redispatch(self, job: Job, item_indexes: Sequence[int] | None = None) -> int:
        """Send a stalled job's missing work again (:mod:`storycue.runtime.supervisor`).

        A match job gets one ``match_chunk`` task per ``job_chunk_size`` of
        ``item_indexes`` (one empty chunk when none is missing: it finishes the job);
        other kinds their whole job task, flagged ``redispatched`` so that it resumes a
        job left ``running`` by a lost task. Returns the number of tasks sent.
        """
        if job.kind == "match":
            todo = list(item_indexes or [])
            size = self.settings.queue.job_chunk_size
            chunks = [todo[i : i + size] for i in range(0, len(todo), size)] or [[]]
            for chunk in chunks:
                self._send(job, TASK_MATCH_CHUNK, job_id=job.id, item_indexes=chunk)
            return len(chunks)
        if job.kind in _JOB_TASKS:
            self._send(job, _JOB_TASKS[job.kind], job_id=job.id, redispatched=True)
            return 1
        raise InvalidInputError(f"unknown job kind {job.kind!r}")

    def cancel(self, job_id: str) -> None:
        """Revoke the job's tasks still queued (workers also see the cancel flag)."""
        for task_id in self._task_ids.pop(job_id, []):
            self.app.control.revoke(task_id)

    def ingest_track(self, **track: Unpack[TrackToIngest]) -> str:
        """Queue the ingest of one track by URI on ``audio``; returns the task id."""
        queue = TASK_ROUTES[TASK_INGEST_TRACK]
        kwargs = {"title": None, "artist": None, **track, "tags": track.get("tags") or []}
        result = self.app.send_task(
            TASK_INGEST_TRACK, kwargs=kwargs, queue=queue, routing_key=queue
        )
        return str(result.id)
