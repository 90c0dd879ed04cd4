"""The Celery application of the distributed deployment, built from :class:`Settings`.

Queues, one per worker kind::

    text   bulk match chunks (text encoder + vector search)      -> text-worker
    audio  ingest jobs and single-track ingest (musicnn)          -> audio-worker
    train  evaluation and training jobs                           -> trainer

Delivery guarantees: ``task_acks_late`` (a message is acknowledged only when its task has
finished) with ``task_reject_on_worker_lost`` (a worker that dies mid-task hands the
message back) gives at-least-once execution, and every task is idempotent (results are
one row per job item, tracks one row per content hash, vectors one point per track), so a
re-run never duplicates anything. Transient errors (database, vector store or broker
unavailable, see :mod:`storycue.runtime.errors`) are retried with exponential backoff and
jitter, up to ``Settings.queue.task_max_retries`` times; after that, or on any other error,
the job is marked failed with the error and the task message is copied to the dead-letter
queue ``storycue.dead_letter`` (:func:`read_dead_letters`).

The broker is whatever ``Settings.queue.broker_url`` names: ``redis://`` or ``amqp://``
(both tested), or Kafka through kombu's ``confluentkafka://`` transport (see
``services/README.md``).
"""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task
from kombu import Exchange, Queue
from kombu.simple import SimpleQueue

from storycue.config import Settings, get_settings
from storycue.errors import StorycueError
from storycue.log import get_logger
from storycue.runtime.errors import TRANSIENT_ERRORS

log = get_logger(__name__)

QUEUE_TEXT = "text"
QUEUE_AUDIO = "audio"
QUEUE_TRAIN = "train"
#: Every work queue, one per worker kind.
QUEUES: tuple[str, ...] = (QUEUE_TEXT, QUEUE_AUDIO, QUEUE_TRAIN)
#: Where task messages go after their last failed try.
QUEUE_DEAD_LETTER = "storycue.dead_letter"

TASK_MATCH_CHUNK = "storycue.match_chunk"
TASK_INGEST_JOB = "storycue.ingest_job"
TASK_INGEST_TRACK = "storycue.ingest_track"
TASK_EVALUATE_JOB = "storycue.evaluate_job"
TASK_TRAIN_JOB = "storycue.train_job"
TASK_PING = "storycue.ping"

#: Which queue each task goes to.
TASK_ROUTES: Mapping[str, str] = {
    TASK_MATCH_CHUNK: QUEUE_TEXT,
    TASK_INGEST_JOB: QUEUE_AUDIO,
    TASK_INGEST_TRACK: QUEUE_AUDIO,
    TASK_EVALUATE_JOB: QUEUE_TRAIN,
    TASK_TRAIN_JOB: QUEUE_TRAIN,
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration of ``settings`` (a plain dict, for inspection and tests)."""
    q = settings.queue
    exchange = Exchange("storycue", type="direct")
    return {
        "broker_url": q.broker_url,
        "result_backend": q.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": q.prefetch_multiplier,
        "task_queues": tuple(Queue(name, exchange, routing_key=name) for name in QUEUES),
        "task_default_queue": QUEUE_TEXT,
        "task_default_exchange": "storycue",
        "task_default_routing_key": QUEUE_TEXT,
        "task_routes": {
            name: {"queue": queue, "routing_key": queue} for name, queue in TASK_ROUTES.items()
        },
        "task_ignore_result": q.result_backend is None,
        "task_store_errors_even_if_ignored": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": q.visibility_timeout_s,
            # Redis: how often a worker sweeps for messages of lost workers. kombu's
            # default (every 10th call of a 10 s timer) delays redelivery by minutes
            # whatever the visibility timeout; sweep every call, a few times per timeout.
            "unacked_restore_interval": max(1, min(10, round(q.visibility_timeout_s / 4))),
            "unacked_restore_throttle": 1,
            # The sweep holds a Redis lock for a few milliseconds; kombu lets it expire only
            # after 300 s, so a worker killed mid-sweep stops every redelivery for five
            # minutes (tests/runtime/test_redis_redelivery.py; the likely cause of a fault
            # test run whose SIGKILLed worker's chunk never came back within 240 s). Expire
            # it after a few sweep intervals instead; the restore itself is a WATCHed
            # transaction, so an overlapping sweep cannot deliver a message twice.
            "unacked_mutex_expire": max(2, min(30, round(q.visibility_timeout_s / 4))),
            "confirm_publish": True,
        },
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "enable_utc": True,
    }


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
        from storycue.jobs.tasks import fail_job

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


def create_celery_app(settings: Settings | None = None) -> Celery:
    """The Celery app of ``settings`` with every storycue task registered."""
    from storycue.runtime.tasks import register_tasks

    s = settings or get_settings()
    app = Celery("storycue", set_as_current=False)
    app.config_from_object(celery_config(s))
    app.storycue_settings = s  # type: ignore[attr-defined]
    register_tasks(app, s)
    return app


def queue_depths(app: Celery) -> dict[str, int]:
    """Messages waiting in each worker queue (a passive declare per queue, each on its own
    channel: AMQP closes a channel whose passive declare names a missing queue). Queues the
    broker does not know yet are left out."""
    depths: dict[str, int] = {}
    with app.connection_for_read() as conn:
        for name in QUEUES:
            channel = conn.channel()
            try:
                declared = channel.queue_declare(queue=name, passive=True)
                depths[name] = int(declared.message_count)
            except Exception as exc:  # a missing queue or a broker hiccup
                log.debug("queue_depth_unavailable", queue=name, error=str(exc))
            finally:
                with contextlib.suppress(Exception):  # a channel AMQP already closed
                    channel.close()
    return depths
