"""Jobs: bulk matching, ingest, evaluation and training, run by workers or in-process.

- :mod:`storycue.jobs.tasks` — the job functions workers call (``run_match_items``,
  ``run_ingest``, ``run_evaluate``, ``run_train``), idempotent and re-runnable.
- :mod:`storycue.jobs.dispatch` — the :class:`JobDispatcher` interface and the embedded
  :class:`InProcessDispatcher`.
- :mod:`storycue.jobs.submit` — creating validated jobs (used by the gateway).
- :mod:`storycue.jobs.matching` / :mod:`storycue.jobs.ingest` — tenant-aware search and
  ingest (of a registered track source, or of one URI for the Kafka consumer and the
  audio worker), over the core paths of :mod:`storycue.pipeline`.

The stores and models they run on are the process's :mod:`storycue.context`.
"""

from storycue.jobs.dispatch import InProcessDispatcher, JobDispatcher
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
    "fail_job",
    "match_chunks",
    "run_evaluate",
    "run_ingest",
    "run_job",
    "run_match_items",
    "run_train",
]
