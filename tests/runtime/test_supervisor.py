"""The job supervisor: stalled jobs get their missing work re-dispatched, then fail.

Against a throw-away PostgreSQL database and Redis database 9 as the broker (no fakes):
the re-dispatched tasks are read back off the broker's ``text``/``audio`` queues through
kombu, and the end-to-end test runs a real worker subprocess whose job messages were
purged from the queue before it could take them (a message the broker lost).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from kombu import Exchange, Queue
from sqlalchemy import update
from typer.testing import CliRunner

from storycue.config import Settings, get_settings
from storycue.jobs.params import MatchParams
from storycue.metrics import JOBS_REDISPATCHED
from storycue.runtime.dispatcher import CeleryDispatcher
from storycue.runtime.supervisor import JOB_STALLED, JobSupervisor
from storycue.storage import MetadataStore
from storycue.storage.jobs import JobStore
from storycue.storage.orm import JobRow
from support import workers
from support.local import require_port

REDIS_URL = os.environ.get("STORYCUE_TEST_SUPERVISOR_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def redis_url() -> str:
    require_port("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def _take(app: Celery, queue: str) -> list[tuple[str, dict[str, Any]]]:
    """Take every task message off ``queue``: ``(task name, kwargs)`` each."""
    out: list[tuple[str, dict[str, Any]]] = []
    with app.connection_for_write() as conn:
        sq = conn.SimpleQueue(
            Queue(queue, Exchange("storycue", type="direct"), routing_key=queue), no_ack=True
        )
        try:
            while True:
                try:
                    msg = sq.get(block=True, timeout=0.5)
                except sq.Empty:
                    break
                _args, kwargs, _embed = msg.decode()
                out.append((str(msg.headers["task"]), dict(kwargs)))
        finally:
            sq.close()
    return out


def _backdate(md: MetadataStore, job_id: str, seconds: float) -> None:
    with md.engine.begin() as conn:
        conn.execute(
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(updated_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


@pytest.fixture
def settings(pg_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=pg_url,
        device="cpu",
        queue={
            "execution": "celery",
            "broker_url": redis_url,
            "job_chunk_size": 3,
            "stall_timeout_s": 60,
            "task_max_retries": 2,
        },
    )


@pytest.fixture
def stores(settings: Settings) -> Iterator[tuple[MetadataStore, JobStore]]:
    md = MetadataStore(settings.resolved_database_url)
    try:
        yield md, JobStore(md.engine)
    finally:
        md.close()


Supervised = tuple[MetadataStore, JobStore, CeleryDispatcher, JobSupervisor]


@pytest.fixture
def supervised(settings: Settings, stores: tuple[MetadataStore, JobStore]) -> Supervised:
    """The stores, a Celery dispatcher on emptied queues, and a supervisor over them."""
    md, jobs = stores
    dispatcher = CeleryDispatcher(settings)
    workers.purge_queues(dispatcher.app)
    return md, jobs, dispatcher, JobSupervisor(settings, jobs=jobs, dispatcher=dispatcher)


def test_one_pass_redispatches_exactly_the_missing_items(supervised: Supervised) -> None:
    md, jobs, dispatcher, sup = supervised

    job = jobs.create(
        "acme", "match", {"top_k": 2}, items=[(f"s{i}", f"story {i}") for i in range(10)]
    )
    assert jobs.start("acme", job.id)
    for i in (0, 1, 2, 4, 6, 9):
        jobs.record_result("acme", job.id, i, {"id": f"s{i}"})
    fresh = jobs.create("acme", "match", {"top_k": 2}, items=[("x", "not stalled")])
    assert jobs.missing_indexes("acme", job.id) == [3, 5, 7, 8]

    assert sup.run_once() == []  # nothing is older than the stall timeout yet
    _backdate(md, job.id, 120)
    before = JOBS_REDISPATCHED.labels(kind="match")._value.get()

    (action,) = sup.run_once()
    assert (action.job_id, action.action, action.redispatches) == (job.id, "redispatched", 1)
    assert action.item_indexes == (3, 5, 7, 8) and action.tasks == 2  # chunks of 3
    sent = _take(dispatcher.app, "text")
    assert [name for name, _ in sent] == ["storycue.match_chunk"] * 2
    assert all(kw["job_id"] == job.id for _, kw in sent)
    assert sorted(i for _, kw in sent for i in kw["item_indexes"]) == [3, 5, 7, 8]
    assert JOBS_REDISPATCHED.labels(kind="match")._value.get() == before + 1
    again = jobs.require("acme", job.id)
    assert again.redispatches == 1 and again.updated_at > job.updated_at
    assert again.state == "running"

    # A second pass right away: the job was touched, nothing is sent again.
    assert sup.run_once() == []
    assert _take(dispatcher.app, "text") == []
    # Two supervisors that read the same stalled snapshot: only one claims it.
    _backdate(md, job.id, 120)
    seen = jobs.require("acme", job.id)
    cutoff = datetime.now(UTC) - timedelta(seconds=60)
    assert jobs.claim_redispatch(seen, cutoff) is not None
    assert jobs.claim_redispatch(seen, cutoff) is None
    assert jobs.require("acme", job.id).redispatches == 2

    # Past task_max_retries (2) re-dispatches: the job fails with job_stalled.
    _backdate(md, job.id, 120)
    (gave_up,) = sup.run_once()
    assert gave_up.action == "failed"
    failed = jobs.require("acme", job.id)
    assert failed.state == "failed" and failed.error_code == JOB_STALLED
    assert _take(dispatcher.app, "text") == []
    assert jobs.require("acme", fresh.id).state == "queued"  # never touched


def test_queued_and_whole_job_kinds_get_their_job_task(supervised: Supervised) -> None:
    md, jobs, dispatcher, sup = supervised
    ingest = jobs.create("acme", "ingest", {"catalogue": "c"}, items=[("1", "a.wav")])
    match = jobs.create("acme", "match", {"top_k": 1}, items=[("a", "x"), ("b", "y")])
    empty = jobs.create("acme", "match", {"top_k": 1}, items=[])
    for j in (ingest, match, empty):
        _backdate(md, j.id, 120)  # queued, its message lost before any worker took it
    actions = {a.job_id: a for a in sup.run_once()}
    assert set(actions) == {ingest.id, match.id, empty.id}
    assert _take(dispatcher.app, "audio") == [
        ("storycue.ingest_job", {"job_id": ingest.id, "redispatched": True})
    ]
    text = sorted((kw["job_id"], kw["item_indexes"]) for _, kw in _take(dispatcher.app, "text"))
    assert text == sorted([(match.id, [0, 1]), (empty.id, [])])


def test_the_gateway_runs_the_supervisor_and_the_cli_one_pass(
    settings: Settings, stores: tuple[MetadataStore, JobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    from storycue.api import create_app
    from storycue.cli import app as cli_app

    md, jobs = stores
    fast = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"stall_timeout_s": 2.0})}
    )
    dispatcher = CeleryDispatcher(fast)
    workers.purge_queues(dispatcher.app)
    job = jobs.create("acme", "evaluate", {"model": "m"}, total=1)
    _backdate(md, job.id, 120)
    app = create_app(fast)
    assert app.state.supervisor is not None
    with TestClient(app):
        deadline = time.monotonic() + 20
        while jobs.require("acme", job.id).redispatches == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert app.state.supervisor._thread is not None
    assert app.state.supervisor._thread is None  # stopped with the app
    assert jobs.require("acme", job.id).redispatches == 1
    assert _take(dispatcher.app, "train") == [
        ("storycue.evaluate_job", {"job_id": job.id, "redispatched": True})
    ]

    # `storycue supervise --once` in its own process settings (the environment's).
    _backdate(md, job.id, 120)
    for key, value in {
        "STORYCUE_HOME": str(fast.home),
        "STORYCUE_DATABASE_URL": fast.resolved_database_url,
        "STORYCUE_QUEUE__BROKER_URL": fast.queue.broker_url,
        "STORYCUE_QUEUE__STALL_TIMEOUT_S": "2",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["supervise", "--once"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert (line["job_id"], line["action"], line["redispatches"]) == (job.id, "redispatched", 2)
    assert len(_take(dispatcher.app, "train")) == 1

    inprocess = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"execution": "inprocess"})}
    )
    assert create_app(inprocess).state.supervisor is None


def test_a_lost_match_job_finishes_with_one_result_per_item(
    settings: Settings,
    stores: tuple[MetadataStore, JobStore],
    clips: list[Path],
    tmp_path: Path,
) -> None:
    md, jobs = stores
    env = workers.worker_environment(
        tmp_path / "worker-home",
        settings.resolved_database_url,
        settings.queue.broker_url,
        clips[0].parent,
    )
    s = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"job_chunk_size": 2})}
    )
    dispatcher = CeleryDispatcher(s)
    app = dispatcher.app
    workers.purge_queues(app)
    with workers.celery_worker(("text", "audio"), env, tmp_path / "worker.log") as worker:
        for clip in clips:
            dispatcher.ingest_track(tenant="acme", catalogue="tones", uri=str(clip))

        def tracks() -> int:
            cat = md.get_catalogue("tones", "acme")
            return 0 if cat is None else md.count_tracks(cat.id)

        workers.wait_on_worker("three tracks", lambda: tracks() == 3, 240, worker)

        # The worker stops consuming `text`; the job's chunks are sent and then lost.
        replies = app.control.cancel_consumer("text", reply=True, timeout=10)
        assert replies, "the worker did not answer cancel_consumer"
        job = jobs.create(
            "acme",
            "match",
            MatchParams(top_k=2).model_dump(mode="json"),
            items=[(f"s{i}", workers.STORIES[i % len(workers.STORIES)]) for i in range(10)],
        )
        dispatcher.dispatch(job)  # 5 chunks of 2 stories
        assert workers.purge_queues(app)["text"] == 5
        replies = app.control.add_consumer(
            "text", exchange="storycue", routing_key="text", reply=True, timeout=10
        )
        assert replies, "the worker did not answer add_consumer"
        time.sleep(3)
        assert jobs.require("acme", job.id).state == "queued"  # nothing left to run it

        sup = JobSupervisor(
            s, jobs=jobs, dispatcher=dispatcher, stall_timeout_s=3.0, max_redispatches=50
        )
        actions: list[Any] = []
        done = workers.wait_for_job(
            jobs,
            job.id,
            worker,
            "the re-dispatched match job",
            each_poll=lambda: actions.extend(sup.run_once()),
        )
        assert (done.progress_done, done.progress_total) == (10, 10)
        assert actions and actions[0].item_indexes == tuple(range(10))
        assert done.redispatches == len(actions) >= 1
        results, _cursor = jobs.results("acme", job.id, limit=100)
        assert [r.index for r in results] == list(range(10))
        assert all(r.ok and r.result["id"] == f"s{r.index}" for r in results)
        assert sup.run_once() == []  # a finished job is never touched again


def test_a_running_task_heartbeats_so_it_never_looks_stalled(
    settings: Settings, stores: tuple[MetadataStore, JobStore]
) -> None:
    from storycue.context import close_contexts
    from storycue.runtime.tasks import heartbeat

    md, jobs = stores
    s = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"stall_timeout_s": 4.0})}
    )
    job = jobs.create("acme", "train", {"family": "va"}, total=1)
    assert jobs.start("acme", job.id)
    _backdate(md, job.id, 120)
    cutoff = datetime.now(UTC) - timedelta(seconds=4)
    try:
        with heartbeat(s, job.id):  # a beat every second
            time.sleep(2.5)
        assert jobs.stalled(cutoff) == []
        assert jobs.require("acme", job.id).updated_at > cutoff
        jobs.fail("acme", job.id, "x", "done")
        assert not jobs.touch(job.id)  # only running jobs are touched
    finally:
        close_contexts()
