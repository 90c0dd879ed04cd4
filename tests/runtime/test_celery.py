"""Celery: configuration, and a real worker process on Redis and on RabbitMQ.

The worker runs as a subprocess (``python -m storycue.runtime.worker``) on a throw-away
PostgreSQL database; it alone opens its embedded vector store, so the test process only
reads the database and talks to the broker.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from storycue.config import Settings
from storycue.jobs.params import MatchParams
from storycue.runtime.celery_app import celery_config, create_celery_app
from storycue.runtime.dispatcher import CeleryDispatcher
from storycue.runtime.names import QUEUES, TASK_INGEST_TRACK, TASK_MATCH_CHUNK
from storycue.runtime.tasks import read_dead_letters
from storycue.storage import MetadataStore
from storycue.storage.jobs import JobStore
from storycue.transient import is_transient
from support.workers import (
    STORIES,
    celery_worker,
    purge_queues,
    wait_for_job,
    wait_on_worker,
    worker_environment,
)


def test_config_from_settings() -> None:
    s = Settings(queue={"prefetch_multiplier": 3, "visibility_timeout_s": 42})
    cfg = celery_config(s)
    assert cfg["task_acks_late"] is True and cfg["task_reject_on_worker_lost"] is True
    assert cfg["worker_prefetch_multiplier"] == 3
    assert cfg["broker_transport_options"]["visibility_timeout"] == 42
    # a worker killed while it holds the restore lock blocks redelivery only this long
    assert cfg["broker_transport_options"]["unacked_mutex_expire"] == 10
    assert [q.name for q in cfg["task_queues"]] == list(QUEUES)
    app = create_celery_app(s)
    task = app.tasks[TASK_MATCH_CHUNK]
    assert task.acks_late and task.max_retries == s.queue.task_max_retries
    assert task.retry_jitter and task.retry_backoff >= 1
    assert app.amqp.router.route({}, TASK_INGEST_TRACK)["queue"].name == "audio"
    assert app.amqp.router.route({}, TASK_MATCH_CHUNK)["queue"].name == "text"


def test_transient_errors_are_told_apart() -> None:
    from sqlalchemy.exc import OperationalError

    from storycue.errors import ConfigurationError, InvalidInputError

    assert is_transient(OperationalError("select 1", {}, Exception("connection refused")))
    assert is_transient(ConnectionRefusedError())
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    assert not is_transient(InvalidInputError("bad story"))
    missing_schema = ConfigurationError("no schema")
    missing_schema.__cause__ = OperationalError("x", {}, Exception("no such table"))
    assert not is_transient(missing_schema)


@pytest.fixture
def worker_env(tmp_path: Path, pg_url: str, broker_url: str, clips: list[Path]) -> dict[str, str]:
    return worker_environment(tmp_path / "worker-home", pg_url, broker_url, clips[0].parent)


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    app = create_celery_app(
        Settings(queue={"broker_url": worker_env["STORYCUE_QUEUE__BROKER_URL"]})
    )
    purge_queues(app)  # leftovers of an earlier run
    queues = ("text", "audio", "train")
    with celery_worker(queues, worker_env, tmp_path / "worker.log") as proc:
        yield proc


def test_worker_ingests_matches_and_dead_letters(
    worker: subprocess.Popen, worker_env: dict[str, str], clips: list[Path], tmp_path: Path
) -> None:
    settings = Settings(
        database_url=worker_env["STORYCUE_DATABASE_URL"],
        queue={"broker_url": worker_env["STORYCUE_QUEUE__BROKER_URL"], "job_chunk_size": 2},
    )
    dispatcher = CeleryDispatcher(settings)
    md = MetadataStore(settings.resolved_database_url)
    jobs = JobStore(md.engine)
    try:
        for clip in [*clips, clips[0]]:  # the last is a duplicate: stored once
            dispatcher.ingest_track(tenant="acme", catalogue="tones", uri=str(clip))

        def tracks() -> int:
            cat = md.get_catalogue("tones", "acme")
            return 0 if cat is None else md.count_tracks(cat.id)

        wait_on_worker("three tracks", lambda: tracks() == 3, 240, worker)

        job = jobs.create(
            "acme",
            "match",
            MatchParams(top_k=2).model_dump(mode="json"),
            items=[(f"s{i}", t) for i, t in enumerate(STORIES)],
        )
        dispatcher.dispatch(job)  # 3 chunks of <= 2 stories on the text queue
        done = wait_for_job(jobs, job.id, worker, "the match job")
        assert (done.progress_done, done.progress_total) == (5, 5)
        items, _cursor = jobs.results("acme", job.id, limit=100)
        assert len(items) == 5 and all(r.ok for r in items)
        for r in items:
            segments = r.result["cue_sheet"]["segments"]
            assert segments and all(len(seg["tracks"]) == 2 for seg in segments)

        # Re-running a chunk (a redelivery) duplicates nothing.
        dispatcher.app.send_task(
            TASK_MATCH_CHUNK, kwargs={"job_id": job.id, "item_indexes": [0, 1]}, queue="text"
        )
        # A URI outside the allowed roots can never succeed: dead-lettered at once.
        dispatcher.ingest_track(tenant="acme", catalogue="tones", uri="/etc/hostname")
        letters: list = []
        wait_on_worker(
            "a dead letter",
            lambda: bool(
                letters.extend(read_dead_letters(dispatcher.app, timeout_s=0.5)) or letters
            ),
            120,
            worker,
        )
        assert letters[0]["task"] == TASK_INGEST_TRACK
        assert letters[0]["kwargs"]["uri"] == "/etc/hostname"
        # a policy refusal (403 at the gateway), permanent like any invalid input
        assert letters[0]["error_code"] == "source_not_allowed" and letters[0]["retries"] == 0
        again = jobs.require("acme", job.id)
        assert again.progress_done == 5 and again.state == "succeeded"
        assert tracks() == 3
    finally:
        md.close()
