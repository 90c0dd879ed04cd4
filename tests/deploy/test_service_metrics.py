"""storycue.metrics: the exposition after real code paths, in one and in several processes.

Each test reads the values back from the Prometheus text exposition (what a scrape gets),
not from the metric objects, and compares before/after values because the default
registry is process-wide.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from prometheus_client.parser import text_string_to_metric_families

from storycue import metrics
from storycue.config import Settings
from storycue.errors import InvalidInputError
from storycue.pipeline.engine import Engine
from storycue.storage.factory import close_vector_stores

REPO = Path(__file__).resolve().parents[2]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(path: Path | None = None) -> Samples:
    """Every sample of the exposition, keyed by (name, labels)."""
    body, content_type = metrics.render(path=path)
    assert content_type.startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def stage_count(samples: Samples, stage: str) -> float:
    return value(samples, "storycue_stage_duration_seconds_count", stage=stage)


# ---- helpers -----------------------------------------------------------------------------------
def test_time_stage_records_the_block_even_when_it_raises() -> None:
    before = scrape()
    with metrics.time_stage("decode"):
        pass
    with pytest.raises(RuntimeError), metrics.time_stage("decode"):
        raise RuntimeError("decode failed")
    after = scrape()
    assert stage_count(after, "decode") - stage_count(before, "decode") == 2
    le_inf = value(after, "storycue_stage_duration_seconds_bucket", stage="decode", le="+Inf")
    assert le_inf == stage_count(after, "decode")


def test_time_stage_rejects_an_unknown_stage() -> None:
    stage: metrics.Stage = "warp"  # type: ignore[assignment]
    with (
        pytest.raises(InvalidInputError, match="unknown pipeline stage"),
        metrics.time_stage(stage),
    ):
        pass


def test_http_requests_errors_and_latency_by_route_method_status() -> None:
    before = scrape()
    metrics.observe_request("/v1/test-route", "post", 200, 0.02)
    metrics.observe_request("/v1/test-route", "POST", 200, 0.3)
    metrics.observe_request("/v1/test-route", "POST", 404, 0.001)
    metrics.observe_request("/v1/test-route", "POST", 503, 2.0)
    after = scrape()

    def delta(name: str, status: str) -> float:
        lbl = {"route": "/v1/test-route", "method": "POST", "status": status}
        return value(after, name, **lbl) - value(before, name, **lbl)

    assert delta("storycue_http_requests_total", "200") == 2
    assert delta("storycue_http_requests_total", "404") == 1
    assert delta("storycue_http_request_errors_total", "404") == 0  # client errors are not ours
    assert delta("storycue_http_request_errors_total", "503") == 1
    assert delta("storycue_http_request_duration_seconds_count", "200") == 2
    assert delta("storycue_http_request_duration_seconds_sum", "200") == pytest.approx(0.32)
    lbl = {"route": "/v1/test-route", "method": "POST", "status": "200", "le": "0.025"}
    bucket = "storycue_http_request_duration_seconds_bucket"
    assert value(after, bucket, **lbl) - value(before, bucket, **lbl) == 1


def test_track_task_counts_success_and_failure_and_times_both() -> None:
    before = scrape()
    with metrics.track_task("text", "storycue.test_task"):
        pass
    with pytest.raises(ValueError), metrics.track_task("text", "storycue.test_task"):
        raise ValueError("boom")
    metrics.observe_task("text", "storycue.test_task", "retried", 0.5)
    with pytest.raises(InvalidInputError):
        metrics.observe_task("text", "storycue.test_task", "exploded", 1.0)  # type: ignore[arg-type]
    after = scrape()
    lbl = {"queue": "text", "task": "storycue.test_task"}
    for outcome in ("succeeded", "failed", "retried"):
        name = "storycue_tasks_total"
        got = value(after, name, **lbl, outcome=outcome) - value(
            before, name, **lbl, outcome=outcome
        )
        assert got == 1, outcome
    count = "storycue_task_duration_seconds_count"
    assert value(after, count, **lbl) - value(before, count, **lbl) == 3


def test_gauges_jobs_queue_lag_dependencies() -> None:
    metrics.set_job_counts("match", {"queued": 3, "running": 1})
    metrics.set_queue_depth("audio", 17)
    metrics.set_kafka_lag("storycue.tracks.v1", 2, 42)
    metrics.set_dependency_up("database", False)
    with pytest.raises(InvalidInputError, match="unknown job state"):
        metrics.set_job_counts("match", {"lost": 1})
    s = scrape()
    assert value(s, "storycue_jobs", kind="match", state="queued") == 3
    assert value(s, "storycue_jobs", kind="match", state="running") == 1
    # Every state is exposed, absent ones as 0, so dashboards never see gaps.
    assert ("storycue_jobs", frozenset({"kind": "match", "state": "cancelled"}.items())) in s
    assert value(s, "storycue_queue_depth", queue="audio") == 17
    assert value(s, "storycue_kafka_consumer_lag", topic="storycue.tracks.v1", partition="2") == 42
    assert value(s, "storycue_dependency_up", dependency="database") == 0
    assert value(s, "storycue_build_info", version=__import__("storycue").__version__) == 1


def test_kafka_counters_and_batch_sizes() -> None:
    before = scrape()
    metrics.count_kafka_message("t.v1")
    metrics.count_kafka_message("t.v1")
    metrics.count_kafka_message("t.v1", dead_letter_reason="malformed_json")
    metrics.observe_batch("requests", 5)
    with pytest.raises(InvalidInputError):
        metrics.observe_batch("requests", -1)
    after = scrape()
    name = "storycue_kafka_messages_processed_total"
    assert value(after, name, topic="t.v1") - value(before, name, topic="t.v1") == 2
    dlq = "storycue_kafka_messages_dead_lettered_total"
    lbl = {"topic": "t.v1", "reason": "malformed_json"}
    assert value(after, dlq, **lbl) - value(before, dlq, **lbl) == 1
    bs = "storycue_batch_size_sum"
    assert value(after, bs, kind="requests") - value(before, bs, kind="requests") == 5


def test_exposed_names_cover_every_family_in_the_exposition() -> None:
    names = metrics.exposed_names()
    storycue_samples = {name for name, _ in scrape() if name.startswith("storycue_")}
    assert storycue_samples <= names
    assert "storycue_http_requests_total" in names
    assert "storycue_stage_duration_seconds_bucket" in names


# ---- instrumented pipeline ----------------------------------------------------------------------
@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(Settings(home=tmp_path / "home"))
    yield eng
    eng.close()
    close_vector_stores()


def _tone(path: Path, seconds: float, freq: float) -> Path:
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def test_ingest_and_match_record_every_stage_and_the_embeddings(
    engine: Engine, tmp_path: Path
) -> None:
    files = [_tone(tmp_path / f"t{f}.wav", 4.0, f) for f in (220.0, 440.0)]
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really audio")
    before = scrape()
    report = engine.ingest([*files, tmp_path / "bad.wav"], catalogue="metrics")
    assert report.embedded == 2 and len(report.failed) == 1
    engine.match("The storm broke over the harbour and everyone ran.", top_k=1)
    after = scrape()

    # decode ran for all three files (the bad one fails inside it); the rest for the two.
    assert stage_count(after, "decode") - stage_count(before, "decode") == 3
    for stage in ("mel", "backbone", "head", "store"):
        assert stage_count(after, stage) - stage_count(before, stage) == 2, stage
    for stage in ("segment", "text_encoder"):
        assert stage_count(after, stage) - stage_count(before, stage) == 1, stage
    assert stage_count(after, "search") - stage_count(before, "search") >= 1
    key = engine.model.identity.key
    written = "storycue_embeddings_written_total"
    assert value(after, written, model=key) - value(before, written, model=key) == 2
    # A 4 s clip is one 3 s patch (its 1 s tail is under the 1.5 s that adds a patch): one
    # backbone batch of one patch per clip.
    for name in ("storycue_batch_size_sum", "storycue_batch_size_count"):
        got = value(after, name, kind="audio_patches") - value(before, name, kind="audio_patches")
        assert got == 2, name
    assert value(after, "storycue_batch_size_count", kind="text") > value(
        before, "storycue_batch_size_count", kind="text"
    )
    # Re-ingesting stored content embeds nothing and writes no embedding.
    engine.ingest(files, catalogue="metrics")
    again = scrape()
    assert value(again, written, model=key) == value(after, written, model=key)


def test_model_loads_are_timed_per_component() -> None:
    from storycue.models.emotion import load_emotion_model
    from storycue.models.musicnn import backbone as bb
    from storycue.models.text import TextEncoder

    enc = TextEncoder()
    enc.model()
    bb.clear_backbone_cache()
    backbone = bb.load_backbone("MTT_musicnn", device="cpu")
    # A runtime option not used elsewhere makes this a fresh load of the shipped heads.
    model = load_emotion_model("va-regression", device="cpu", text_batch_size=3)
    s = scrape()
    seconds = value(s, "storycue_model_load_seconds", component="text_encoder", model=enc.name)
    assert seconds == pytest.approx(enc.load_seconds)
    assert seconds > 0
    assert (
        value(s, "storycue_model_load_seconds", component="audio_backbone", model=backbone.name) > 0
    )
    heads = value(s, "storycue_model_load_seconds", component="heads", model=model.identity.key)
    assert heads > 0


# ---- exposition: ASGI app, HTTP server, multiprocess mode --------------------------------------
def _asgi_get(app: Any, path: str = "/metrics") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return int(start["status"]), headers, body


def test_metrics_app_serves_the_exposition() -> None:
    metrics.observe_request("/v1/asgi-check", "GET", 200, 0.01)
    status, headers, body = _asgi_get(metrics.metrics_app())
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert b'storycue_http_requests_total{method="GET",route="/v1/asgi-check",status="200"}' in body


def test_start_metrics_server_serves_over_http() -> None:
    server, thread = metrics.start_metrics_server(0, addr="127.0.0.1")
    try:
        port = server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        assert resp.status == 200
        assert "storycue_build_info" in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


_CHILD = textwrap.dedent(
    """
    import sys
    from storycue import metrics
    n = int(sys.argv[1])
    for _ in range(n):
        with metrics.time_stage("backbone"):
            pass
        metrics.observe_request("/v1/search", "POST", 200, 0.01)
    metrics.set_queue_depth("text", n)
    """
)


def _run_child(mp_dir: Path, n: int) -> None:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    subprocess.run([sys.executable, "-c", _CHILD, str(n)], env=env, check=True, timeout=120)


def test_multiprocess_mode_sums_every_process(tmp_path: Path) -> None:
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    _run_child(mp_dir, 3)
    _run_child(mp_dir, 4)
    assert len(list(mp_dir.glob("*.db"))) >= 2  # one set of files per process
    s = scrape(path=mp_dir)
    assert stage_count(s, "backbone") == 7
    lbl = {"route": "/v1/search", "method": "POST", "status": "200"}
    assert value(s, "storycue_http_requests_total", **lbl) == 7
    # Gauges follow their multiprocess mode: the most recent queue depth wins.
    assert value(s, "storycue_queue_depth", queue="text") == 4
    assert value(s, "storycue_build_info", version=__import__("storycue").__version__) == 1


def test_multiprocess_dir_is_created_when_missing(tmp_path: Path) -> None:
    mp_dir = tmp_path / "not" / "yet"
    _run_child(mp_dir, 1)
    assert mp_dir.is_dir()
    assert stage_count(scrape(path=mp_dir), "backbone") == 1
