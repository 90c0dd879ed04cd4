"""Jobs: bulk matching, ingest, evaluation and training, run by workers or in-process.

- :mod:`storycue.jobs.tasks` — the job functions workers call (``run_match_items``,
  ``run_ingest``, ``run_evaluate``, ``run_train``), idempotent and re-runnable.
- :mod:`storycue.jobs.dispatch` — the :class:`JobDispatcher` interface and the embedded
  :class:`InProcessDispatcher`.
- :mod:`storycue.jobs.submit` — creating validated jobs (used by the gateway).
- :mod:`storycue.jobs.matching` / :mod:`storycue.jobs.ingest` — tenant-aware search and
  ingest of one registered track, shared with the Kafka consumer.
"""

from storycue.jobs.dispatch import InProcessDispatcher, JobDispatcher
from storycue.jobs.runtime import JobRuntime, close_runtimes, get_runtime
from storycue.jobs.tasks import (
    fail_job,
    match_chunks,
    run_evaluate,
    run_ingest,
    run_job,
    run_match_items,
    run_train,
)

__all__ = [
    "InProcessDispatcher",
    "JobDispatcher",
    "JobRuntime",
    "close_runtimes",
    "fail_job",
    "get_runtime",
    "match_chunks",
    "run_evaluate",
    "run_ingest",
    "run_job",
    "run_match_items",
    "run_train",
]
