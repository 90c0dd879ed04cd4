"""Queue depth (what the backlog alerts read) and the worker's metrics server."""

from __future__ import annotations

import socket
import time

import pytest
from prometheus_client import REGISTRY

from storycue.config import QueueSettings, Settings
from storycue.metrics import start_metrics_server_if_enabled
from storycue.runtime.celery_app import create_celery_app, queue_depths
from storycue.runtime.names import QUEUES, TASK_MATCH_CHUNK


def _purge(app: object) -> None:
    with app.connection_for_write() as conn:  # type: ignore[attr-defined]
        for name in QUEUES:
            channel = conn.channel()
            try:
                channel.queue_purge(name)
            except Exception:  # the queue does not exist on this broker yet
                pass
            finally:
                channel.close()


@pytest.mark.parametrize("broker_url", ["redis", "rabbitmq"], indirect=True)
def test_queue_depths_count_waiting_messages(broker_url: str) -> None:
    from storycue.runtime.dispatcher import CeleryDispatcher
    from storycue.runtime.supervisor import JobSupervisor

    settings = Settings(queue=QueueSettings(execution="celery", broker_url=broker_url))
    app = create_celery_app(settings)
    _purge(app)
    try:
        for i in range(3):  # no worker consumes these: they wait in the text queue
            app.send_task(
                TASK_MATCH_CHUNK,
                kwargs={"job_id": f"depth-probe-{i}", "item_indexes": []},
                queue="text",
                routing_key="text",
            )
        deadline = time.monotonic() + 10
        depths = queue_depths(app)
        while depths.get("text") != 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            depths = queue_depths(app)
        assert depths["text"] == 3
        assert depths.get("audio", 0) == 0

        supervisor = JobSupervisor(
            settings,
            jobs=None,
            dispatcher=CeleryDispatcher(settings, app=app),  # type: ignore[arg-type]
        )
        assert supervisor.sample_queue_depths()["text"] == 3
        assert REGISTRY.get_sample_value("storycue_queue_depth", {"queue": "text"}) == 3
    finally:
        _purge(app)


def test_metrics_server_port_taken_is_not_fatal() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert start_metrics_server_if_enabled(port) is False
    assert start_metrics_server_if_enabled(0) is False
