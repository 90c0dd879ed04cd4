"""A real Celery worker process for the runtime tests: its environment, starting and
stopping it, emptying the queues it reads, waiting on it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from storycue.runtime.names import QUEUE_DEAD_LETTER, QUEUES
from support.local import stop_process
from support.services import process_env

#: Five one-sentence stories, one or two of each quadrant, for match jobs on a worker.
STORIES = [
    "The sun rose over the meadow and the children ran laughing into the warm light.",
    "He stood alone at the grave, rain soaking his coat, unable to say goodbye.",
    "The alarm screamed; footsteps thundered down the corridor towards the locked door.",
    "A quiet evening by the fire, a cup of tea, a cat asleep on her lap.",
    "Rage boiled inside her as the lies piled up, one upon another.",
]


def worker_environment(
    home: Path, database_url: str, broker_url: str, allowed_root: Path
) -> dict[str, str]:
    """A worker's environment (:func:`support.services.process_env`): its own home, the
    database and broker, one folder it may ingest from, chunks of 2."""
    return process_env(
        {
            "STORYCUE_HOME": str(home),
            "STORYCUE_DATABASE_URL": database_url,
            "STORYCUE_QUEUE__BROKER_URL": broker_url,
            "STORYCUE_QUEUE__JOB_CHUNK_SIZE": "2",
            "STORYCUE_SOURCES__ALLOWED_ROOTS": f'["{allowed_root}"]',
        }
    )


def purge_queues(app: Any) -> dict[str, int]:
    """Empty every work queue (and the dead letters); messages dropped per queue."""
    out: dict[str, int] = {}
    with app.connection_for_write() as conn:
        ch = conn.default_channel
        for q in (*QUEUES, QUEUE_DEAD_LETTER):
            try:
                out[q] = int(ch.queue_purge(q) or 0)
            except Exception:  # the queue does not exist yet
                ch = conn.channel()
                out[q] = 0
    return out


@contextmanager
def celery_worker(
    queues: tuple[str, ...], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``storycue.runtime.worker`` consuming ``queues``, its output in ``log_path``;
    stopped (terminated, then killed after 30 s) afterwards."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "storycue.runtime.worker", *queues],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            stop_process(proc, 30)


def wait_on_worker(
    what: str, check: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[bytes]
) -> None:
    """Poll ``check`` until it holds; fail the test if the worker exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"the worker exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def wait_for_job(
    jobs: Any,
    job_id: str,
    proc: subprocess.Popen[bytes],
    what: str,
    *,
    tenant: str = "acme",
    each_poll: Callable[[], object] | None = None,
    timeout_s: float = 240.0,
) -> Any:
    """Wait (calling ``each_poll`` at every poll) until the job is terminal; the job, which
    must have succeeded."""

    def finished() -> bool:
        if each_poll is not None:
            each_poll()
        j = jobs.get(tenant, job_id)
        return j is not None and bool(j.terminal)

    wait_on_worker(what, finished, timeout_s, proc)
    done = jobs.require(tenant, job_id)
    assert done.state == "succeeded", done.error_message
    return done
