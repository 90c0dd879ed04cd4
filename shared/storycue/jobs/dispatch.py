"""How jobs reach the code that runs them.

:class:`JobDispatcher` is the interface the gateway talks to: the embedded mode uses
:class:`InProcessDispatcher` (a thread pool in the gateway's own process); the distributed
deployment implements it with Celery tasks that call the functions of
:mod:`storycue.jobs.tasks` (one task per chunk of :func:`~storycue.jobs.tasks.match_chunks`
for match jobs, one per job otherwise).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, runtime_checkable

from storycue.config import Settings
from storycue.jobs.tasks import (
    fail_job,
    match_chunks,
    run_evaluate,
    run_ingest,
    run_match_items,
    run_train,
)
from storycue.log import get_logger
from storycue.storage.jobs import Job

log = get_logger(__name__)


@runtime_checkable
class JobDispatcher(Protocol):
    """Sends jobs to be run, and stops them."""

    def dispatch(self, job: Job) -> None:
        """Schedule a freshly created (queued) job. Must not block on the work."""
        ...

    def cancel(self, job_id: str) -> None:
        """Best effort: stop queued work of a job whose cancel was recorded in the database
        (workers also check the database between batches)."""
        ...


class InProcessDispatcher:
    """Runs jobs in a thread pool of this process (embedded mode, tests).

    Match jobs are cut into chunks of ``settings.queue.job_chunk_size`` stories, each
    its own task, exactly as the Celery dispatcher does. A task that raises fails its job
    with the code ``internal_error`` (there is no broker to retry it).
    """

    def __init__(self, settings: Settings, *, max_workers: int = 2) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._futures: dict[str, list[Future[None]]] = {}
        self._closed = False

    def _submit(self, job: Job, fn: object, *args: object) -> None:
        def run() -> None:
            try:
                fn(*args)  # type: ignore[operator]
            except Exception as exc:
                log.exception("job task failed", job_id=job.id, kind=job.kind)
                try:
                    fail_job(
                        job.id, "internal_error", f"{type(exc).__name__}: {exc}", self.settings
                    )
                except Exception:
                    log.exception("could not record the job failure", job_id=job.id)

        fut = self._pool.submit(run)
        with self._lock:
            self._futures.setdefault(job.id, []).append(fut)

    def dispatch(self, job: Job) -> None:
        if self._closed:
            raise RuntimeError("the dispatcher is shut down")
        s = self.settings
        if job.kind == "match":
            for chunk in match_chunks(job, s.queue.job_chunk_size) or [[]]:
                self._submit(job, run_match_items, job.id, chunk, s)
        elif job.kind == "ingest":
            self._submit(job, run_ingest, job.id, s)
        elif job.kind == "evaluate":
            self._submit(job, run_evaluate, job.id, s)
        elif job.kind == "train":
            self._submit(job, run_train, job.id, s)
        log.info("job dispatched", job_id=job.id, kind=job.kind, mode="inprocess")

    def cancel(self, job_id: str) -> None:
        with self._lock:
            futures = list(self._futures.get(job_id, ()))
        for fut in futures:
            fut.cancel()  # only tasks not started yet; running ones see the flag

    def wait(self, job_id: str | None = None, timeout: float | None = None) -> None:
        """Block until the tasks of one job (or every job) have finished."""
        with self._lock:
            if job_id is None:
                futures = [f for fs in self._futures.values() for f in fs]
            else:
                futures = list(self._futures.get(job_id, ()))
        for fut in futures:
            if not fut.cancelled():
                fut.exception(timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
