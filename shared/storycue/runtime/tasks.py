"""The Celery tasks: thin adapters from a task message to the job functions.

Every task is idempotent: the job functions of :mod:`storycue.jobs.tasks` skip items that
already have a result and upsert results; single-track ingest is idempotent by content
(:mod:`storycue.jobs.ingest`). A task that runs again after a worker was lost (the
broker redelivered it), after a transient error (a retry) or because the supervisor sent
it again (``redispatched``: the broker lost it, :mod:`storycue.runtime.supervisor`)
resumes the job.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Unpack

from celery import Celery, Task
from kombu import Queue
from kombu.simple import SimpleQueue

from storycue.config import Settings, get_settings
from storycue.context import get_context
from storycue.errors import StorycueError
from storycue.jobs.ingest import ingest_uri
from storycue.jobs.params import TrackToIngest
from storycue.jobs.tasks import fail_job, run_evaluate, run_ingest, run_match_items, run_train
from storycue.log import get_logger
from storycue.metrics import track_task
from storycue.runtime.names import (
    QUEUE_DEAD_LETTER,
    TASK_EVALUATE_JOB,
    TASK_INGEST_JOB,
    TASK_INGEST_TRACK,
    TASK_MATCH_CHUNK,
    TASK_PING,
    TASK_ROUTES,
    TASK_TRAIN_JOB,
)
from storycue.transient import TRANSIENT_ERRORS

log = get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Autoretry options of every storycue task, from ``Settings.queue``."""

    max_retries: int
    backoff_s: float
    backoff_max_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        q = settings.queue
        return cls(q.task_max_retries, q.task_retry_backoff_s, q.task_retry_backoff_max_s)

    def task_options(self) -> dict[str, Any]:
        return {
            "autoretry_for": TRANSIENT_ERRORS,
            "max_retries": self.max_retries,
            # Celery's backoff factor is whole seconds: countdown = factor * 2**retries.
            "retry_backoff": max(1, round(self.backoff_s)),
            "retry_backoff_max": max(1, round(self.backoff_max_s)),
            "retry_jitter": True,
        }


class StorycueTask(Task):  # type: ignore[misc]
    """Base task: on the final failure, mark the job failed and dead-letter the message."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        settings: Settings = getattr(self.app, "storycue_settings", None) or get_settings()
        code = exc.code if isinstance(exc, StorycueError) else type(exc).__name__
        message = exc.message if isinstance(exc, StorycueError) else str(exc)
        job_id = kwargs.get("job_id")
        if isinstance(job_id, str):
            _fail_job(settings, job_id, code, message)
        dead_letter(
            self.app,
            {
                "task": self.name,
                "task_id": task_id,
                "args": list(args),
                "kwargs": kwargs,
                "queue": (self.request.delivery_info or {}).get("routing_key"),
                "retries": self.request.retries,
                "error_code": code,
                "error": message[:4000],
                "traceback": "".join(traceback.format_exception(exc))[-8000:],
                "failed_at": datetime.now(UTC).isoformat(),
            },
        )
        log.error("task_dead_lettered", task=self.name, task_id=task_id, job_id=job_id, code=code)


def _fail_job(settings: Settings, job_id: str, code: str, message: str) -> None:
    """Mark a job failed (unless it already finished); never raises."""
    try:
        fail_job(job_id, code, message, settings)
    except Exception as exc:  # the dead-letter record still keeps the failure
        log.error("marking_job_failed_failed", job_id=job_id, error=str(exc))


def dead_letter(app: Celery, record: Mapping[str, Any]) -> None:
    """Append ``record`` (JSON) to the dead-letter queue; never raises."""
    try:
        with app.connection_for_write() as conn:
            sq = SimpleQueue(conn, Queue(QUEUE_DEAD_LETTER, routing_key=QUEUE_DEAD_LETTER))
            try:
                sq.put(json.loads(json.dumps(record, default=str)), serializer="json")
            finally:
                sq.close()
    except Exception as exc:
        log.error("dead_letter_publish_failed", error=str(exc), task=record.get("task"))


def read_dead_letters(app: Celery, limit: int = 100, *, timeout_s: float = 1.0) -> list[Any]:
    """Take up to ``limit`` records off the dead-letter queue (for operators and tests)."""
    out: list[Any] = []
    with app.connection_for_read() as conn:
        sq = SimpleQueue(conn, Queue(QUEUE_DEAD_LETTER, routing_key=QUEUE_DEAD_LETTER))
        try:
            while len(out) < limit:
                try:
                    msg = sq.get(block=True, timeout=timeout_s)
                except sq.Empty:
                    break
                out.append(msg.payload)
                msg.ack()
        finally:
            sq.close()
    return out


def _resumed(task: Any) -> bool:
    """Whether this run continues an earlier one (a retry, or a redelivered message)."""
    info = task.request.delivery_info or {}
    return bool(task.request.retries) or bool(info.get("redelivered"))


@contextmanager
def heartbeat(settings: Settings, job_id: str) -> Iterator[None]:
    """While the block runs, touch the job's ``updated_at`` every quarter of
    ``queue.stall_timeout_s`` (at least 1 s), so that the supervisor
    (:mod:`storycue.runtime.supervisor`) never takes a job whose task is alive (a long
    training run, a slow chunk) for one whose message the broker lost."""
    stop = threading.Event()
    every = max(1.0, settings.queue.stall_timeout_s / 4)

    def beat() -> None:
        while not stop.wait(every):
            try:
                get_context(settings).jobs.touch(job_id)
            except Exception as exc:  # the database is down: the task itself will notice
                log.warning("job heartbeat failed", job_id=job_id, error=str(exc))

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def register_tasks(app: Celery, settings: Settings) -> None:
    """Register every storycue task on ``app`` (bound to ``settings``)."""
    opts: dict[str, Any] = {"base": StorycueTask, "bind": True, "acks_late": True}
    opts |= RetryPolicy.from_settings(settings).task_options()

    @app.task(name=TASK_MATCH_CHUNK, **opts)  # type: ignore[untyped-decorator]
    def match_chunk(self: Any, *, job_id: str, item_indexes: list[int]) -> int:
        """Match the stories ``item_indexes`` of a bulk match job (``text`` queue)."""
        with (
            track_task(TASK_ROUTES[TASK_MATCH_CHUNK], TASK_MATCH_CHUNK),
            heartbeat(settings, job_id),
        ):
            run_match_items(job_id, item_indexes, settings)
        return len(item_indexes)

    @app.task(name=TASK_INGEST_JOB, **opts)  # type: ignore[untyped-decorator]
    def ingest_job(self: Any, *, job_id: str, redispatched: bool = False) -> None:
        """Ingest the registered tracks of an ingest job (``audio`` queue)."""
        with track_task(TASK_ROUTES[TASK_INGEST_JOB], TASK_INGEST_JOB), heartbeat(settings, job_id):
            run_ingest(job_id, settings, redelivered=redispatched or _resumed(self))

    @app.task(name=TASK_INGEST_TRACK, **opts)  # type: ignore[untyped-decorator]
    def ingest_track(self: Any, **track: Unpack[TrackToIngest]) -> dict[str, Any]:
        """Ingest one track by URI (``audio`` queue); returns its ids."""
        with track_task(TASK_ROUTES[TASK_INGEST_TRACK], TASK_INGEST_TRACK):
            done = ingest_uri(
                get_context(settings),
                settings,
                tenant=track["tenant"],
                catalogue=track["catalogue"],
                uri=track["uri"],
                title=track.get("title"),
                artist=track.get("artist"),
                tags=track.get("tags") or (),
            )
        return {
            "track_id": done.track.id,
            "catalogue_id": done.track.catalogue_id,
            "embedded_now": done.embedded_now,
            "point_id": done.embedding.point_id,
            "model": done.model_key,
        }

    @app.task(name=TASK_EVALUATE_JOB, **opts)  # type: ignore[untyped-decorator]
    def evaluate_job(self: Any, *, job_id: str, redispatched: bool = False) -> None:
        """Run an evaluation job (``train`` queue)."""
        with (
            track_task(TASK_ROUTES[TASK_EVALUATE_JOB], TASK_EVALUATE_JOB),
            heartbeat(settings, job_id),
        ):
            run_evaluate(job_id, settings, redelivered=redispatched or _resumed(self))

    @app.task(name=TASK_TRAIN_JOB, **opts)  # type: ignore[untyped-decorator]
    def train_job(self: Any, *, job_id: str, redispatched: bool = False) -> None:
        """Run a training job (``train`` queue)."""
        with track_task(TASK_ROUTES[TASK_TRAIN_JOB], TASK_TRAIN_JOB), heartbeat(settings, job_id):
            run_train(job_id, settings, redelivered=redispatched or _resumed(self))

    @app.task(name=TASK_PING, bind=True, acks_late=True)  # type: ignore[untyped-decorator]
    def ping(self: Any) -> dict[str, Any]:
        """Liveness of a worker (routed to whichever queue the caller names)."""
        return {"ok": True, "hostname": self.request.hostname}
