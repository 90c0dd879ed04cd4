"""The Celery application of the distributed deployment, built from :class:`Settings`:
configuration only. The queue and task names are in :mod:`storycue.runtime.names`, the
tasks, their base class, retry policy and dead-lettering in :mod:`storycue.runtime.tasks`.

Delivery guarantees: ``task_acks_late`` (a message is acknowledged only when its task has
finished) with ``task_reject_on_worker_lost`` (a worker that dies mid-task hands the
message back) gives at-least-once execution, and every task is idempotent (results are
one row per job item, tracks one row per content hash, vectors one point per track), so a
re-run never duplicates anything. Transient errors (database, vector store or broker
unavailable, see :mod:`storycue.transient`) are retried with exponential backoff and
jitter, up to ``Settings.queue.task_max_retries`` times; after that, or on any other error,
the job is marked failed with the error and the task message is copied to the dead-letter
queue ``storycue.dead_letter`` (:func:`storycue.runtime.tasks.read_dead_letters`).

The broker is whatever ``Settings.queue.broker_url`` names: ``redis://`` or ``amqp://``
(both tested), or Kafka through kombu's ``confluentkafka://`` transport (see
``services/README.md``).
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

from celery import Celery
from kombu import Exchange, Queue

from storycue.config import Settings, get_settings
from storycue.log import get_logger
from storycue.runtime.names import QUEUE_TEXT, QUEUES, TASK_ROUTES
from storycue.runtime.tasks import register_tasks

log = get_logger(__name__)


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


def create_celery_app(settings: Settings | None = None) -> Celery:
    """The Celery app of ``settings`` with every storycue task registered."""
    s = settings or get_settings()
    app = Celery("storycue", set_as_current=False)
    app.config_from_object(celery_config(s))
    cast(Any, app).storycue_settings = s  # read back by the tasks' base class
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
