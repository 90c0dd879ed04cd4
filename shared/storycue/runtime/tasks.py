"""The Celery tasks: thin adapters from a task message to the job functions.

Every task is idempotent: the job functions of :mod:`storycue.jobs.tasks` skip items that
already have a result and upsert results; single-track ingest is idempotent by content
(:mod:`storycue.runtime.ingest`). A task that runs again after a worker was lost (the
broker redelivered it) or after a transient error (a retry) resumes the job.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from storycue.config import Settings
from storycue.jobs.runtime import get_runtime
from storycue.jobs.tasks import run_evaluate, run_ingest, run_match_items, run_train
from storycue.log import get_logger
from storycue.metrics import track_task
from storycue.runtime.celery_app import (
    TASK_EVALUATE_JOB,
    TASK_INGEST_JOB,
    TASK_INGEST_TRACK,
    TASK_MATCH_CHUNK,
    TASK_PING,
    TASK_ROUTES,
    TASK_TRAIN_JOB,
    RetryPolicy,
    StorycueTask,
)
from storycue.runtime.ingest import ingest_uri

log = get_logger(__name__)


def _resumed(task: Any) -> bool:
    """Whether this run continues an earlier one (a retry, or a redelivered message)."""
    info = task.request.delivery_info or {}
    return bool(task.request.retries) or bool(info.get("redelivered"))


def register_tasks(app: Celery, settings: Settings) -> None:
    """Register every storycue task on ``app`` (bound to ``settings``)."""
    opts: dict[str, Any] = {"base": StorycueTask, "bind": True, "acks_late": True}
    opts |= RetryPolicy.from_settings(settings).task_options()

    @app.task(name=TASK_MATCH_CHUNK, **opts)  # type: ignore[untyped-decorator]
    def match_chunk(self: Any, *, job_id: str, item_indexes: list[int]) -> int:
        """Match the stories ``item_indexes`` of a bulk match job (``text`` queue)."""
        with track_task(TASK_ROUTES[TASK_MATCH_CHUNK], TASK_MATCH_CHUNK):
            run_match_items(job_id, item_indexes, settings)
        return len(item_indexes)

    @app.task(name=TASK_INGEST_JOB, **opts)  # type: ignore[untyped-decorator]
    def ingest_job(self: Any, *, job_id: str) -> None:
        """Ingest the registered tracks of an ingest job (``audio`` queue)."""
        with track_task(TASK_ROUTES[TASK_INGEST_JOB], TASK_INGEST_JOB):
            run_ingest(job_id, settings, redelivered=_resumed(self))

    @app.task(name=TASK_INGEST_TRACK, **opts)  # type: ignore[untyped-decorator]
    def ingest_track(
        self: Any,
        *,
        tenant: str,
        catalogue: str,
        uri: str,
        title: str | None = None,
        artist: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Ingest one track by URI (``audio`` queue); returns its ids."""
        with track_task(TASK_ROUTES[TASK_INGEST_TRACK], TASK_INGEST_TRACK):
            done = ingest_uri(
                get_runtime(settings),
                settings,
                tenant=tenant,
                catalogue=catalogue,
                uri=uri,
                title=title,
                artist=artist,
                tags=tags or (),
            )
        return {
            "track_id": done.track.id,
            "catalogue_id": done.track.catalogue_id,
            "embedded_now": done.embedded_now,
            "point_id": done.embedding.point_id,
            "model": done.model_key,
        }

    @app.task(name=TASK_EVALUATE_JOB, **opts)  # type: ignore[untyped-decorator]
    def evaluate_job(self: Any, *, job_id: str) -> None:
        """Run an evaluation job (``train`` queue)."""
        with track_task(TASK_ROUTES[TASK_EVALUATE_JOB], TASK_EVALUATE_JOB):
            run_evaluate(job_id, settings, redelivered=_resumed(self))

    @app.task(name=TASK_TRAIN_JOB, **opts)  # type: ignore[untyped-decorator]
    def train_job(self: Any, *, job_id: str) -> None:
        """Run a training job (``train`` queue)."""
        with track_task(TASK_ROUTES[TASK_TRAIN_JOB], TASK_TRAIN_JOB):
            run_train(job_id, settings, redelivered=_resumed(self))

    @app.task(name=TASK_PING, bind=True, acks_late=True)  # type: ignore[untyped-decorator]
    def ping(self: Any) -> dict[str, Any]:
        """Liveness of a worker (routed to whichever queue the caller names)."""
        return {"ok": True, "hostname": self.request.hostname}
