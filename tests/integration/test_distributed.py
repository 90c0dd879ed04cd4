"""The distributed system end to end, every service a separate OS process.

Processes: the gateway (``storycue serve``, Celery dispatch), one text worker, one audio
worker and one trainer (``storycue worker --queue text|audio|train``), the Kafka ingest
consumer (``storycue consume``), and the Qdrant REST stand-in (tests/support/qdrant_rest.py;
the services reach it as a Qdrant server through ``STORYCUE_QDRANT_URL``, on the production
server path). Real services: a throw-away PostgreSQL database, Redis as the Celery broker,
Tansu as Kafka.

The scenario:

1. ``track.added`` events of real 4Q clips go to Kafka; the consumer is SIGKILLed in the
   middle of the ingest and restarted (same consumer group): every track must end up in
   PostgreSQL and in the vector store exactly once, every message committed.
   While the restarted consumer resumes, the vector store (the stand-in) is SIGKILLed and
   started again: the gateway's /readyz answers 503 with a retry hint meanwhile, the
   consumer retries the message in hand, and nothing is dead-lettered.
2. Two more clips are registered through the gateway and ingested by an ingest job on the
   audio queue (the audio worker embeds them).
3. A bulk match job of real stories (ISEAR texts) goes through ``POST /v1/jobs/match``; the
   text worker is SIGKILLed while it runs and restarted (its unacknowledged chunks are
   redelivered): the job must succeed with exactly one result per story.

A JSON summary (jobs finished, tracks stored, duplicates found) is written to the test's
tmp folder and logged. ``test_distributed[small]`` (8 clips, 20 stories) runs by default;
``test_distributed[full]`` (50 clips, 200 stories, the issue's bar) is ``slow``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from storycue.config import KafkaSettings, QueueSettings, Settings
from storycue.data.isear import clean_isear, read_isear
from storycue.events.kafka import ensure_topics, publish_track_events
from storycue.events.schemas import TrackEvent
from storycue.log import get_logger
from storycue.runtime.celery_app import create_celery_app
from storycue.runtime.names import QUEUES
from support.fourq import distinct_clips
from support.kafka import committed_total, read_topic
from support.qdrant_rest import QdrantRestServer, free_port
from support.services import Supervisor, process_env, storycue_command
from support.tansu import TansuBroker
from support.vectors import vector_points

log = get_logger(__name__)

pytestmark = [pytest.mark.postgres, pytest.mark.data]

TENANT = "default"  # the gateway runs without API keys here: every request is this tenant
CATALOGUE = "fourq"
API_CATALOGUE = "fourq-api"
PARTITIONS = 3
TOP_K = 3


@dataclass(frozen=True)
class Scenario:
    clips: int
    stories: int
    chunk_size: int
    text_concurrency: int
    timeout_s: float


# ---- inputs -------------------------------------------------------------------------------


def make_stories(data_dir: Path, n: int) -> list[dict[str, str]]:
    """``n`` stories of three ISEAR situations each (paragraphs, so several segments)."""
    texts = [r.text for r in clean_isear(read_isear(data_dir / "isear")).records]
    if len(texts) < 3 * n:
        pytest.skip(f"ISEAR has {len(texts)} usable texts, {3 * n} needed")
    return [
        {"id": f"story-{i:04d}", "text": "\n\n".join(texts[3 * i : 3 * i + 3])} for i in range(n)
    ]


# ---- the stack ----------------------------------------------------------------------------
@dataclass
class Stack:
    sup: Supervisor
    env: dict[str, str]
    settings: Settings
    gateway: str
    qdrant_url: str
    pg_url: str

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(query, args).fetchall())

    def count(self, query: str, *args: Any) -> int:
        return int(self.sql(query, *args)[0][0])

    def tracks(self, catalogue: str) -> int:
        return self.count(
            "SELECT count(*) FROM tracks t JOIN catalogues c ON c.id = t.catalogue_id "
            "WHERE c.tenant = %s AND c.name = %s",
            TENANT,
            catalogue,
        )


def start_stack(
    sup: Supervisor,
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    tansu: TansuBroker,
    fourq: Path,
    scenario: Scenario,
) -> Stack:
    tag = os.urandom(4).hex()
    qdrant = QdrantRestServer(tmp_path / "qdrant", log_path=sup.folder / "qdrant-rest.log")
    env = process_env(
        {
            "STORYCUE_HOME": str(tmp_path / "home"),
            "STORYCUE_DATABASE_URL": pg_url,
            "STORYCUE_QDRANT_URL": qdrant.url,
            "STORYCUE_QUEUE__EXECUTION": "celery",
            "STORYCUE_QUEUE__BROKER_URL": redis_url,
            "STORYCUE_QUEUE__JOB_CHUNK_SIZE": str(scenario.chunk_size),
            # A SIGKILLed worker's unacknowledged tasks come back after this long (Redis).
            "STORYCUE_QUEUE__STALL_TIMEOUT_S": "40",  # the supervisor re-sends lost work
            "STORYCUE_QUEUE__VISIBILITY_TIMEOUT_S": "30",
            "STORYCUE_QUEUE__TASK_RETRY_BACKOFF_S": "0.5",
            "STORYCUE_KAFKA__BOOTSTRAP_SERVERS": tansu.bootstrap_servers,
            "STORYCUE_KAFKA__TOPIC_TRACKS": f"tracks-{tag}",
            "STORYCUE_KAFKA__TOPIC_EMBEDDED": f"embedded-{tag}",
            "STORYCUE_KAFKA__TOPIC_DEAD_LETTER": f"dlq-{tag}",
            "STORYCUE_KAFKA__GROUP_ID": f"ingest-{tag}",
            "STORYCUE_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "STORYCUE_KAFKA__HEARTBEAT_INTERVAL_MS": "2000",
            "STORYCUE_KAFKA__MAX_POLL_RECORDS": "4",
            "STORYCUE_SOURCES__ALLOWED_ROOTS": json.dumps([str(fourq)]),
        }
    )
    settings = Settings(
        database_url=pg_url,
        qdrant_url=qdrant.url,
        queue=QueueSettings(broker_url=redis_url),
        kafka=KafkaSettings(
            bootstrap_servers=tansu.bootstrap_servers,
            topic_tracks=env["STORYCUE_KAFKA__TOPIC_TRACKS"],
            topic_embedded=env["STORYCUE_KAFKA__TOPIC_EMBEDDED"],
            topic_dead_letter=env["STORYCUE_KAFKA__TOPIC_DEAD_LETTER"],
            group_id=env["STORYCUE_KAFKA__GROUP_ID"],
        ),
    )
    ensure_topics(settings, partitions=PARTITIONS)

    sc = storycue_command()
    port = free_port()
    sup.start("qdrant-rest", qdrant.command(), env)
    sup.start("gateway", [*sc, "serve", "--host", "127.0.0.1", "--port", str(port)], env)
    sup.start(
        "text-worker",
        [*sc, "worker", "--queue", "text", "--concurrency", str(scenario.text_concurrency)],
        env,
    )
    sup.start("audio-worker", [*sc, "worker", "--queue", "audio"], env)
    sup.start("trainer", [*sc, "worker", "--queue", "train"], env)
    sup.start("ingest-consumer", [*sc, "consume"], env)
    stack = Stack(sup, env, settings, f"http://127.0.0.1:{port}", qdrant.url, pg_url)

    sup.wait_for("the gateway's /readyz", lambda: _ready(stack.gateway), 180)
    sup.wait_for(
        "a worker on each queue", lambda: set(worker_queues(settings)) >= set(QUEUES), 300, 2
    )
    return stack


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def worker_queues(settings: Settings) -> dict[str, list[str]]:
    """Queue -> the Celery worker nodes consuming it (asked over the broker)."""
    app = create_celery_app(settings)
    try:
        replies = app.control.inspect(timeout=2.0).active_queues() or {}
    finally:
        app.close()
    out: dict[str, list[str]] = {}
    for node, queues in replies.items():
        for q in queues:
            out.setdefault(q["name"], []).append(node)
    return out


# ---- checks -------------------------------------------------------------------------------
def job_state(stack: Stack, job_id: str) -> dict[str, Any]:
    resp = httpx.get(f"{stack.gateway}/v1/jobs/{job_id}", timeout=30)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def wait_job(stack: Stack, job_id: str, timeout_s: float) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def done() -> bool:
        state.update(job_state(stack, job_id))
        return state["state"] in ("succeeded", "failed", "cancelled")

    stack.sup.wait_for(f"job {job_id}", done, timeout_s, 1.0)
    return state


def all_results(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 50}
        if cursor:
            params["cursor"] = cursor
        resp = httpx.get(f"{stack.gateway}/v1/jobs/{job_id}/results", params=params, timeout=30)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        out.extend(page["results"])
        cursor = page["next_cursor"]
        if not cursor:
            return out


# ---- the scenario -------------------------------------------------------------------------
def run_scenario(
    scenario: Scenario,
    sup: Supervisor,
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    tansu: TansuBroker,
    data_dir: Path,
) -> dict[str, Any]:
    started = time.monotonic()
    fourq = (data_dir / "4q").resolve()
    if not (fourq / "Q1").is_dir():
        pytest.skip(f"the 4Q clips are not at {fourq}")
    clips = distinct_clips(fourq, scenario.clips + 2)
    kafka_clips, api_clips = clips[: scenario.clips], clips[scenario.clips :]
    stories = make_stories(data_dir, scenario.stories)

    stack = start_stack(sup, tmp_path, pg_url, redis_url, tansu, fourq, scenario)
    s = stack.settings
    timings: dict[str, float] = {"stack_up_s": time.monotonic() - started}

    # 1. Kafka ingest, with the consumer SIGKILLed half-way and restarted. -----------------
    t0 = time.monotonic()
    events = [
        TrackEvent(
            type="track.added",
            tenant=TENANT,
            catalogue=CATALOGUE,
            track_key=clip.stem,
            uri=str(clip),
            metadata={"title": clip.stem, "tags": [clip.parent.name]},  # type: ignore[arg-type]
        )
        for clip in kafka_clips
    ]
    assert publish_track_events(events, s) == len(events)
    kill_at = max(2, scenario.clips // 3)
    sup.wait_for(
        f"{kill_at} tracks before the kill",
        lambda: stack.tracks(CATALOGUE) >= kill_at,
        scenario.timeout_s,
    )
    stored_at_kill = stack.tracks(CATALOGUE)
    exit_status = sup.kill("ingest-consumer", signal.SIGKILL)
    assert exit_status == -signal.SIGKILL
    assert stored_at_kill < scenario.clips, "the kill came after the ingest had finished"
    sup.restart("ingest-consumer")

    # 1b. The vector store goes down while the restarted consumer resumes: the gateway
    # answers 503 with a retry hint, the consumer retries from the same offset, and both
    # recover by themselves once it is back.
    sup.kill("qdrant-rest", signal.SIGKILL)
    down = httpx.get(f"{stack.gateway}/readyz", timeout=60)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "not_ready" and down.headers.get("retry-after")
    assert "vectors" in down.json()["error"]["message"]
    sup.wait_for(
        "the consumer to retry against the stopped vector store",
        lambda: "ingest_retry" in sup.log_text("ingest-consumer"),
        scenario.timeout_s,
    )
    sup.restart("qdrant-rest")
    sup.wait_for("the gateway's /readyz after the outage", lambda: _ready(stack.gateway), 120)
    sup.wait_for(
        f"{scenario.clips} tracks after the restart",
        lambda: stack.tracks(CATALOGUE) >= scenario.clips,
        scenario.timeout_s,
    )
    sup.wait_for(
        "every event committed",
        lambda: committed_total(s) >= len(events),
        scenario.timeout_s,
        1.0,
    )
    timings["kafka_ingest_s"] = time.monotonic() - t0

    # 2. Two more clips through the gateway: an ingest job on the audio queue. ------------
    t0 = time.monotonic()
    gw = stack.gateway
    resp = httpx.post(f"{gw}/v1/catalogues", json={"name": API_CATALOGUE}, timeout=30)
    assert resp.status_code == 201, resp.text
    resp = httpx.post(
        f"{gw}/v1/catalogues/{API_CATALOGUE}/tracks",
        json={"tracks": [{"uri": str(c), "title": c.stem} for c in api_clips]},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    resp = httpx.post(f"{gw}/v1/catalogues/{API_CATALOGUE}/ingest", timeout=30)
    assert resp.status_code == 202, resp.text
    ingest_job = wait_job(stack, resp.json()["id"], scenario.timeout_s)
    assert ingest_job["state"] == "succeeded", ingest_job
    assert ingest_job["progress"]["done"] == len(api_clips)
    timings["api_ingest_s"] = time.monotonic() - t0

    # 3. A bulk match job, the text worker SIGKILLed while it runs. ----------------------
    t0 = time.monotonic()
    resp = httpx.post(
        f"{gw}/v1/jobs/match",
        json={"stories": stories, "top_k": TOP_K, "catalogue": CATALOGUE},
        timeout=120,
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    progress: dict[str, Any] = {}

    def partly_done() -> bool:
        progress.update(job_state(stack, job_id))
        return int(progress["progress"]["done"]) > 0

    # Killed once some stories have results and others are still queued or in flight.
    sup.wait_for("the match job's first results", partly_done, scenario.timeout_s, 0.05)
    sup.kill("text-worker", signal.SIGKILL)
    at_kill = job_state(stack, job_id)
    assert at_kill["state"] not in ("succeeded", "failed", "cancelled"), (
        f"the match job finished before the text worker was killed: {at_kill}"
    )
    sup.restart("text-worker")
    job = wait_job(stack, job_id, scenario.timeout_s + 120)
    assert job["state"] == "succeeded", job
    assert (job["progress"]["done"], job["progress"]["total"]) == (len(stories),) * 2
    timings["match_job_s"] = time.monotonic() - t0

    # ---- checks ---------------------------------------------------------------------------
    # PostgreSQL: every Kafka track once, every API track once.
    rows = stack.sql(
        "SELECT c.name, t.id, t.content_hash FROM tracks t "
        "JOIN catalogues c ON c.id = t.catalogue_id WHERE c.tenant = %s",
        TENANT,
    )
    by_cat = Counter(name for name, _id, _h in rows)
    assert by_cat == {CATALOGUE: scenario.clips, API_CATALOGUE: len(api_clips)}
    hashes = Counter((name, h) for name, _id, h in rows)
    pg_dupes = sum(n - 1 for n in hashes.values())
    expected_hashes = {hashlib.sha256(c.read_bytes()).hexdigest() for c in kafka_clips}
    assert {h for name, _id, h in rows if name == CATALOGUE} == expected_hashes
    sources = stack.sql(
        "SELECT ts.uri, ts.state FROM track_sources ts "
        "JOIN catalogues c ON c.id = ts.catalogue_id WHERE c.tenant = %s AND c.name = %s",
        TENANT,
        CATALOGUE,
    )
    assert sorted(u for u, _ in sources) == sorted(str(c) for c in kafka_clips)
    assert {st for _, st in sources} == {"ingested"}
    track_ids = {tid for _n, tid, _h in rows}
    embeddings = stack.sql("SELECT track_id, point_id FROM embeddings")
    assert sorted(t for t, _ in embeddings) == sorted(track_ids)

    # The vector store: one point per track, nothing else.
    points = vector_points(stack.qdrant_url)
    point_tracks = Counter(int(p.payload["track_id"]) for p in points)
    vec_dupes = sum(n - 1 for n in point_tracks.values())
    assert set(point_tracks) == track_ids
    assert len(points) == len(track_ids)
    assert {str(p.id) for p in points} == {str(pid) for _, pid in embeddings}

    # Kafka: every message committed; every track reported embedded (replays allowed).
    committed = committed_total(s)
    assert committed == len(events)
    embedded = read_topic(s, s.kafka.topic_embedded, len(events), timeout_s=30)
    embedded_keys = {r.key.decode() for r in embedded}
    assert embedded_keys == {e.key for e in events}
    dead_letters = read_topic(s, s.kafka.topic_dead_letter, 0, timeout_s=2)
    assert dead_letters == []

    # The match job: one result per story, each a cue sheet on the Kafka catalogue's tracks.
    results = all_results(stack, job_id)
    assert sorted(r["index"] for r in results) == list(range(len(stories)))
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]
    kafka_track_ids = {tid for n, tid, _h in rows if n == CATALOGUE}
    for r in results:
        segments = r["result"]["cue_sheet"]["segments"]
        assert segments
        for seg in segments:
            assert len(seg["tracks"]) == TOP_K
            assert {t["track_id"] for t in seg["tracks"]} <= kafka_track_ids
    result_rows = stack.sql(
        "SELECT count(*), count(DISTINCT item_index) FROM job_results WHERE job_id = %s", job_id
    )
    assert result_rows == [(len(stories), len(stories))]

    # Every service is still up (the two killed ones as their restarts), and the workers
    # of each queue are the ones started here.
    assert sup.dead() == []
    queues = worker_queues(s)
    assert all(len(queues.get(q, [])) == 1 for q in QUEUES), queues
    restarts = {n: svc.starts - 1 for n, svc in sup.services.items() if svc.starts > 1}
    assert restarts == {"ingest-consumer": 1, "text-worker": 1, "qdrant-rest": 1}
    consumer_retries = sup.log_text("ingest-consumer").count('"ingest_retry"')
    assert consumer_retries >= 1

    jobs = stack.sql("SELECT kind, state FROM jobs WHERE tenant = %s", TENANT)
    summary: dict[str, Any] = {
        "scenario": {"clips": scenario.clips, "stories": scenario.stories},
        "jobs_finished": sum(1 for _k, st in jobs if st == "succeeded"),
        "jobs_total": len(jobs),
        "tracks_stored": {"postgresql": len(rows), "vector_store": len(points)},
        "tracks_by_catalogue": dict(by_cat),
        "events_published": len(events),
        "events_committed": committed,
        "track_embedded_events": len(embedded),
        "tracks_at_consumer_kill": stored_at_kill,
        "match_progress_at_text_worker_kill": at_kill["progress"],
        "vector_store_outage": {
            "readyz_status": down.status_code,
            "retry_after_s": down.headers.get("retry-after"),
            "consumer_retries": consumer_retries,
            "dead_lettered": len(dead_letters),
        },
        "stories": len(stories),
        "results": len(results),
        "duplicates_found": pg_dupes + vec_dupes,
        "restarts": restarts,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(time.monotonic() - started, 1),
    }
    assert summary["duplicates_found"] == 0
    assert summary["jobs_finished"] == summary["jobs_total"] == 2
    return summary


def _report(summary: dict[str, Any], tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True))
    log.info("distributed_summary", path=str(path), **summary)
    # pytest shows this in the test's captured output (-rP, or on failure).
    sys.stdout.write(f"\n{name} summary ({path}):\n{json.dumps(summary, indent=2)}\n")


@pytest.mark.parametrize(
    ("scenario", "name"),
    [
        pytest.param(
            Scenario(clips=8, stories=20, chunk_size=2, text_concurrency=1, timeout_s=300),
            "distributed-small",
            id="small",
            marks=pytest.mark.timeout(1200),
        ),
        pytest.param(  # the bar: 50 clips through Kafka, a bulk job of 200 stories
            Scenario(clips=50, stories=200, chunk_size=10, text_concurrency=2, timeout_s=900),
            "distributed-full",
            id="full",
            marks=[pytest.mark.slow, pytest.mark.timeout(3600)],
        ),
    ],
)
def test_distributed(
    scenario: Scenario,
    name: str,
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    tansu: TansuBroker,
    real_data_dir: Path,
    supervisor: Supervisor,  # last: its processes are stopped before the services go
) -> None:
    """The full path: ``small`` (8 clips, 20 stories) on every CI run, ``full`` (``slow``)."""
    summary = run_scenario(scenario, supervisor, tmp_path, pg_url, redis_url, tansu, real_data_dir)
    _report(summary, tmp_path, name)
