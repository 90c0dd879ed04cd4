"""Prometheus metrics shared by every storycue process.

One module defines every metric object with a stable name, so the gateway, the workers,
the Kafka consumer, the Grafana dashboard (``deploy/grafana/``) and the alert rules
(``deploy/prometheus/``) agree on them. Names and label sets are part of the operations
contract: rename nothing without updating the dashboard and the rules (a test checks that
every metric they query is defined here).

Processes that fork (uvicorn or gunicorn workers, Celery's prefork pool) run in
prometheus-client's multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty,
writable folder *before the process starts* (the container entrypoint wipes it), and
expose metrics with :func:`metrics_app`, :func:`render` or :func:`start_metrics_server`,
which aggregate every process's files. Without the variable, the default registry of this
process is exposed, with the process and platform collectors.

Label values must come from small fixed sets (routes as templates such as
``/v1/jobs/{job_id}``, queue and task names, stage names, error codes): never ids, URIs or
tenant names.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from threading import Thread
from typing import Any, Final, Literal, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_asgi_app,
    start_http_server,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.exposition import choose_encoder

from storycue import __version__
from storycue.errors import ConfigurationError, InvalidInputError
from storycue.log import get_logger

log = get_logger(__name__)


def multiprocess_dir() -> Path | None:
    """The multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``), or None in single-process mode."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


#: The prefix of every storycue metric.
NAMESPACE: Final = "storycue"

Stage = Literal["decode", "mel", "backbone", "head", "store", "segment", "text_encoder", "search"]
#: Pipeline stages timed by :func:`time_stage`: the audio path (decode, mel, backbone,
#: head, store) and the text path (segment, text_encoder, search).
STAGES: Final[tuple[str, ...]] = get_args(Stage)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
#: Job states of the metadata store's state machine (the ``state`` label of ``storycue_jobs``).
JOB_STATES: Final[tuple[str, ...]] = get_args(JobState)

TaskOutcome = Literal["succeeded", "failed", "retried", "rejected", "dead_lettered"]
#: Outcomes of one Celery task execution (the ``outcome`` label of ``storycue_tasks_total``).
TASK_OUTCOMES: Final[tuple[str, ...]] = get_args(TaskOutcome)

HTTP_LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
TASK_LATENCY_BUCKETS: Final = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
)  # fmt: skip
STAGE_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 300.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)

# ---- HTTP (gateway) -----------------------------------------------------------------------------
HTTP_REQUESTS: Final = Counter(
    "storycue_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_ERRORS: Final = Counter(
    "storycue_http_request_errors",
    "HTTP requests answered with a server error (status >= 500), by route, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY: Final = Histogram(
    "storycue_http_request_duration_seconds",
    "Time from request to response, by route template, method and status code.",
    ["route", "method", "status"],
    buckets=HTTP_LATENCY_BUCKETS,
)
HTTP_IN_PROGRESS: Final = Gauge(
    "storycue_http_requests_in_progress",
    "HTTP requests being served now, by route template and method.",
    ["route", "method"],
    multiprocess_mode="livesum",
)

# ---- Celery tasks and queues --------------------------------------------------------------------
TASK_LATENCY: Final = Histogram(
    "storycue_task_duration_seconds",
    "Run time of one Celery task execution, by queue and task name.",
    ["queue", "task"],
    buckets=TASK_LATENCY_BUCKETS,
)
TASKS: Final = Counter(
    "storycue_tasks",
    "Celery task executions by queue, task name and outcome "
    "(succeeded, failed, retried, rejected, dead_lettered).",
    ["queue", "task", "outcome"],
)
JOBS_REDISPATCHED: Final = Counter(
    "storycue_jobs_redispatched",
    "Stalled jobs whose missing work the supervisor dispatched again, by job kind.",
    ["kind"],
)
JOBS_STALLED: Final = Counter(
    "storycue_jobs_stalled_failed",
    "Jobs the supervisor gave up on (failed with job_stalled), by job kind.",
    ["kind"],
)
QUEUE_DEPTH: Final = Gauge(
    "storycue_queue_depth",
    "Messages waiting in a broker queue (text, audio, train, ...).",
    ["queue"],
    multiprocess_mode="mostrecent",
)

# ---- workers: batches and pipeline stages -------------------------------------------------------
BATCH_SIZE: Final = Histogram(
    "storycue_batch_size",
    "Items per model forward pass or gathered request batch, by kind "
    "(text segments, audio patches, gathered requests).",
    ["kind"],
    buckets=BATCH_SIZE_BUCKETS,
)
STAGE_DURATION: Final = Histogram(
    "storycue_stage_duration_seconds",
    "Time spent in one pipeline stage call "
    "(decode, mel, backbone, head, store, segment, text_encoder, search).",
    ["stage"],
    buckets=STAGE_BUCKETS,
)

# ---- Kafka ingest consumer ----------------------------------------------------------------------
KAFKA_LAG: Final = Gauge(
    "storycue_kafka_consumer_lag",
    "Messages between the committed offset and the end of a partition.",
    ["topic", "partition"],
    multiprocess_mode="mostrecent",
)
KAFKA_PROCESSED: Final = Counter(
    "storycue_kafka_messages_processed",
    "Catalogue events handled and committed, by topic.",
    ["topic"],
)
KAFKA_DEAD_LETTERED: Final = Counter(
    "storycue_kafka_messages_dead_lettered",
    "Catalogue events sent to the dead-letter topic, by source topic and error code.",
    ["topic", "reason"],
)

# ---- jobs, models, embeddings, dependencies -----------------------------------------------------
JOBS: Final = Gauge(
    "storycue_jobs",
    "Jobs in the metadata store by kind and state (sampled from PostgreSQL).",
    ["kind", "state"],
    multiprocess_mode="mostrecent",
)
MODEL_LOAD_SECONDS: Final = Gauge(
    "storycue_model_load_seconds",
    "Seconds the last load of a model component took (text encoder, audio backbone, heads).",
    ["component", "model"],
    multiprocess_mode="max",
)
EMBEDDINGS_WRITTEN: Final = Counter(
    "storycue_embeddings_written",
    "Track embeddings written to the vector store, by model identity.",
    ["model"],
)
DEPENDENCY_UP: Final = Gauge(
    "storycue_dependency_up",
    "1 when the last readiness check reached a dependency (database, vectors, broker), else 0.",
    ["dependency"],
    multiprocess_mode="mostrecent",
)
BUILD_INFO: Final = Gauge(
    "storycue_build_info",
    "Always 1; the storycue version of the process as a label.",
    ["version"],
    multiprocess_mode="max",
)


def _ensure_multiprocess_dir() -> None:
    # prometheus-client writes a file per process there on the first recorded value; a
    # missing folder would fail deep inside it, so create it or say clearly what is wrong.
    folder = multiprocess_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"PROMETHEUS_MULTIPROC_DIR={folder} cannot be created: {exc}"
        ) from exc


_ensure_multiprocess_dir()
BUILD_INFO.labels(version=__version__).set(1)

#: Every metric object above, by the name it is exposed under (histograms add _bucket,
#: _sum and _count; counters add _total).
ALL_METRICS: Final[tuple[Counter | Gauge | Histogram, ...]] = (
    HTTP_REQUESTS, HTTP_ERRORS, HTTP_LATENCY, HTTP_IN_PROGRESS, TASK_LATENCY, TASKS,
    JOBS_REDISPATCHED, JOBS_STALLED, QUEUE_DEPTH, BATCH_SIZE, STAGE_DURATION, KAFKA_LAG,
    KAFKA_PROCESSED, KAFKA_DEAD_LETTERED,
    JOBS, MODEL_LOAD_SECONDS, EMBEDDINGS_WRITTEN, DEPENDENCY_UP, BUILD_INFO,
)  # fmt: skip


def exposed_names() -> frozenset[str]:
    """Every sample name storycue exposes (``storycue_http_requests_total``,
    ``storycue_stage_duration_seconds_bucket``, ...), for checking queries against."""
    names: set[str] = set()
    for metric in ALL_METRICS:
        for family in metric.describe():
            base = family.name
            if family.type == "counter":
                names.update({f"{base}_total", f"{base}_created"})
            elif family.type == "histogram":
                names.update(f"{base}{s}" for s in ("_bucket", "_sum", "_count", "_created"))
            else:
                names.add(base)
    return frozenset(names)


# ---- recording helpers --------------------------------------------------------------------------
@contextmanager
def time_stage(stage: Stage) -> Iterator[None]:
    """Time the ``with`` block as one call of pipeline ``stage``; recorded even when the
    block raises (a failing decode still took its time)."""
    if stage not in STAGES:
        raise InvalidInputError(f"unknown pipeline stage {stage!r}; one of {', '.join(STAGES)}")
    start = time.perf_counter()
    try:
        yield
    finally:
        STAGE_DURATION.labels(stage=stage).observe(time.perf_counter() - start)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Record one answered HTTP request (``route`` is the template, not the raw path)."""
    labels = {"route": route, "method": method.upper(), "status": str(int(status))}
    HTTP_REQUESTS.labels(**labels).inc()
    HTTP_LATENCY.labels(**labels).observe(max(0.0, seconds))
    if status >= 500:
        HTTP_ERRORS.labels(**labels).inc()


def observe_task(queue: str, task: str, outcome: TaskOutcome, seconds: float | None) -> None:
    """Record one task execution; ``seconds`` is None for outcomes with no run (rejected)."""
    if outcome not in TASK_OUTCOMES:
        raise InvalidInputError(f"unknown task outcome {outcome!r}; one of {TASK_OUTCOMES}")
    TASKS.labels(queue=queue, task=task, outcome=outcome).inc()
    if seconds is not None:
        TASK_LATENCY.labels(queue=queue, task=task).observe(max(0.0, seconds))


@contextmanager
def track_task(queue: str, task: str) -> Iterator[None]:
    """Time the block as one execution of ``task`` on ``queue``: ``succeeded`` when it
    returns, ``failed`` when it raises (the exception propagates)."""
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        observe_task(queue, task, "failed", time.perf_counter() - start)
        raise
    observe_task(queue, task, "succeeded", time.perf_counter() - start)


def observe_batch(kind: str, size: int) -> None:
    """Record one batch of ``size`` items (``kind``: ``text``, ``audio_patches``, ...)."""
    if size < 0:
        raise InvalidInputError(f"batch size must be >= 0, got {size}")
    BATCH_SIZE.labels(kind=kind).observe(size)


def count_redispatch(kind: str, *, gave_up: bool = False) -> None:
    """Count a stalled job re-dispatched by the supervisor (or failed, ``gave_up``)."""
    (JOBS_STALLED if gave_up else JOBS_REDISPATCHED).labels(kind=kind).inc()


def set_queue_depth(queue: str, depth: int) -> None:
    QUEUE_DEPTH.labels(queue=queue).set(max(0, depth))


def set_kafka_lag(topic: str, partition: int, lag: int) -> None:
    KAFKA_LAG.labels(topic=topic, partition=str(int(partition))).set(max(0, lag))


def count_kafka_message(topic: str, *, dead_letter_reason: str | None = None) -> None:
    """Count one handled event: processed, or dead-lettered with its error code."""
    if dead_letter_reason is None:
        KAFKA_PROCESSED.labels(topic=topic).inc()
    else:
        KAFKA_DEAD_LETTERED.labels(topic=topic, reason=dead_letter_reason).inc()


def set_job_counts(kind: str, counts: Mapping[str, int]) -> None:
    """Set the jobs gauge of ``kind`` for every state (states absent from ``counts`` are 0)."""
    unknown = set(counts) - set(JOB_STATES)
    if unknown:
        raise InvalidInputError(f"unknown job state(s) {sorted(unknown)}; one of {JOB_STATES}")
    for state in JOB_STATES:
        JOBS.labels(kind=kind, state=state).set(int(counts.get(state, 0)))


def record_model_load(component: str, model: str, seconds: float) -> None:
    """Record how long loading a model component took (text_encoder, audio_backbone, heads)."""
    MODEL_LOAD_SECONDS.labels(component=component, model=model).set(max(0.0, seconds))


def count_embeddings(model: str, n: int = 1) -> None:
    if n < 0:
        raise InvalidInputError(f"embedding count must be >= 0, got {n}")
    EMBEDDINGS_WRITTEN.labels(model=model).inc(n)


def set_dependency_up(dependency: str, up: bool) -> None:
    DEPENDENCY_UP.labels(dependency=dependency).set(1 if up else 0)


# ---- exposition ---------------------------------------------------------------------------------
def _check_dir(path: Path) -> Path:
    if not path.is_dir():
        raise ConfigurationError(
            f"PROMETHEUS_MULTIPROC_DIR={path} is not a folder: create it (empty, writable) "
            "before the process starts, or unset the variable"
        )
    return path


def collector_registry(path: Path | None = None) -> CollectorRegistry:
    """The registry to expose: in multiprocess mode (``path`` or ``PROMETHEUS_MULTIPROC_DIR``)
    a fresh one aggregating every process's files, else this process's default registry."""
    folder = path or multiprocess_dir()
    if folder is None:
        return REGISTRY
    registry = CollectorRegistry(auto_describe=True)
    _multiprocess.MultiProcessCollector(registry, path=str(_check_dir(folder)))  # type: ignore[no-untyped-call]
    return registry


def render(accept: str | None = None, *, path: Path | None = None) -> tuple[bytes, str]:
    """The exposition body and its content type, negotiated from an ``Accept`` header
    (Prometheus text format by default, OpenMetrics when asked for)."""
    encoder, content_type = choose_encoder(accept or "")
    body: bytes = encoder(collector_registry(path))
    return body, content_type or CONTENT_TYPE_LATEST


def metrics_app() -> Callable[..., Any]:
    """An ASGI app serving the exposition (mount it at ``/metrics``); multiprocess aware."""
    app: Callable[..., Any] = make_asgi_app(collector_registry())
    return app


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> tuple[WSGIServer, Thread]:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread (workers, the consumer).

    In multiprocess mode call it in the parent process only (for Celery: the main process,
    before the pool forks)."""
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"metrics port must be 0..65535, got {port}")
    server, thread = start_http_server(port, addr=addr, registry=collector_registry())
    log.info("metrics_server_started", addr=addr, port=server.server_port)
    return server, thread


def start_metrics_server_if_enabled(port: int) -> bool:
    """Start :func:`start_metrics_server` unless ``port`` is 0; a port already taken (several
    workers on one development host) is logged and skipped rather than fatal, since in a pod
    the liveness probe on ``/metrics`` reports it. Returns whether a server was started."""
    if port == 0:
        return False
    try:
        start_metrics_server(port)
    except OSError as exc:
        log.warning("metrics_server_unavailable", port=port, error=str(exc))
        return False
    return True


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of a child process that exited (gunicorn ``child_exit``, Celery
    ``worker_process_shutdown``); a no-op outside multiprocess mode."""
    folder = multiprocess_dir()
    if folder is not None:
        _multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]
