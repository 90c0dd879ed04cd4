"""The job supervisor: every job finishes, whatever the broker loses.

kombu's Redis transport takes a message off its queue and only then records it as
unacknowledged, in two steps: a worker killed between them loses the message, and its job
would stay ``queued`` or ``running`` forever. The supervisor closes that gap from the
database, the source of truth. One pass (:meth:`JobSupervisor.run_once`):

* finds the jobs (of every tenant) still ``queued`` or ``running`` whose ``updated_at``
  (moved by every result, state change and re-dispatch) is older than
  ``Settings.queue.stall_timeout_s``;
* claims each with a compare-and-set (:meth:`JobStore.claim_redispatch`: ``redispatches``
  + 1, ``updated_at`` now), so that of several supervisors (gateway replicas, a
  ``storycue supervise`` process) exactly one acts on a job in one stall window;
* sends its missing work again through :class:`CeleryDispatcher`: for a match job one
  ``match_chunk`` task per chunk of the item indexes still without a result, for ingest,
  evaluation and training jobs the whole job task, which resumes idempotently;
* gives up after ``Settings.queue.task_max_retries`` re-dispatches of one job: it is
  marked ``failed`` with the code ``job_stalled``.

Re-dispatching is always safe because tasks are idempotent (one result row per job item);
at worst a slow but alive task and its re-dispatched copy both run. Re-dispatches are
logged and counted (``storycue_jobs_redispatched_total{kind}``,
``storycue_jobs_stalled_failed_total{kind}``).

It runs in the gateway (a daemon thread, :meth:`JobSupervisor.start`, when
``queue.execution`` is ``celery``) and as its own process (``storycue supervise``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from storycue.config import Settings, get_settings
from storycue.errors import StorycueError
from storycue.log import get_logger
from storycue.metrics import count_redispatch
from storycue.runtime.dispatcher import CeleryDispatcher
from storycue.storage.jobs import InvalidTransitionError, Job, JobStore

log = get_logger(__name__)

#: The error code of a job the supervisor gave up on.
JOB_STALLED = "job_stalled"


@dataclass(frozen=True, slots=True)
class SupervisorAction:
    """What one pass did to one stalled job."""

    job_id: str
    tenant: str
    kind: str
    action: Literal["redispatched", "failed"]
    #: The item indexes sent again (match jobs; empty otherwise).
    item_indexes: tuple[int, ...] = ()
    #: Tasks sent.
    tasks: int = 0
    #: Re-dispatches of the job so far, this one included.
    redispatches: int = 0


def interval_for(settings: Settings) -> float:
    """The default time between passes: a quarter of the stall timeout, at least 1 s."""
    return max(1.0, settings.queue.stall_timeout_s / 4)


class JobSupervisor:
    """Finds stalled jobs and re-dispatches their missing work (see the module doc)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        jobs: JobStore,
        dispatcher: CeleryDispatcher | None = None,
        stall_timeout_s: float | None = None,
        max_redispatches: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.jobs = jobs
        self.dispatcher = dispatcher or CeleryDispatcher(self.settings)
        self.stall_timeout_s = (
            self.settings.queue.stall_timeout_s if stall_timeout_s is None else stall_timeout_s
        )
        self.max_redispatches = (
            self.settings.queue.task_max_retries if max_redispatches is None else max_redispatches
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one pass ----------------------------------------------------------------------------
    def run_once(self, *, limit: int = 100) -> list[SupervisorAction]:
        """One pass over the stalled jobs (at most ``limit``); what it did, per job."""
        cutoff = self._clock() - timedelta(seconds=self.stall_timeout_s)
        actions: list[SupervisorAction] = []
        for job in self.jobs.stalled(cutoff, limit=limit):
            try:
                action = self._handle(job, cutoff)
            except StorycueError as exc:  # the broker is down: try again next pass
                log.warning(
                    "stalled job not redispatched", job_id=job.id, code=exc.code, error=exc.message
                )
                continue
            if action is not None:
                actions.append(action)
        self.sample_queue_depths()
        return actions

    def sample_queue_depths(self) -> dict[str, int]:
        """Set ``storycue_queue_depth`` for every worker queue (what the backlog alerts
        read); a broker that cannot be asked is logged and skipped."""
        from storycue.metrics import set_queue_depth
        from storycue.runtime.celery_app import queue_depths

        try:
            depths = queue_depths(self.dispatcher.app)
        except Exception as exc:  # the broker is down: try again next pass
            log.warning("queue_depths_unavailable", error=str(exc))
            return {}
        for queue, depth in depths.items():
            set_queue_depth(queue, depth)
        return depths

    def _handle(self, job: Job, cutoff: datetime) -> SupervisorAction | None:
        claimed = self.jobs.claim_redispatch(job, cutoff)
        if claimed is None:  # progress meanwhile, finished, or another supervisor
            return None
        if claimed.redispatches > self.max_redispatches:
            return self._give_up(claimed)
        missing: list[int] = []
        if claimed.kind == "match":
            missing = self.jobs.missing_indexes(claimed.tenant, claimed.id)
        tasks = self.dispatcher.redispatch(claimed, missing)
        count_redispatch(claimed.kind)
        log.warning(
            "stalled job redispatched",
            job_id=claimed.id,
            tenant=claimed.tenant,
            kind=claimed.kind,
            state=claimed.state,
            missing=len(missing) if claimed.kind == "match" else None,
            tasks=tasks,
            redispatches=claimed.redispatches,
            idle_s=round((self._clock() - job.updated_at).total_seconds(), 1),
        )
        return SupervisorAction(
            job_id=claimed.id,
            tenant=claimed.tenant,
            kind=claimed.kind,
            action="redispatched",
            item_indexes=tuple(missing),
            tasks=tasks,
            redispatches=claimed.redispatches,
        )

    def _give_up(self, job: Job) -> SupervisorAction | None:
        message = (
            f"the job made no progress for {self.stall_timeout_s:g} s after "
            f"{job.redispatches - 1} re-dispatch(es) of its missing work; giving up"
        )
        try:
            self.jobs.transition(
                job.tenant,
                job.id,
                "failed",
                expect=("queued", "running"),
                error_code=JOB_STALLED,
                error_message=message,
            )
        except InvalidTransitionError:  # it finished meanwhile
            return None
        count_redispatch(job.kind, gave_up=True)
        log.error("stalled job failed", job_id=job.id, tenant=job.tenant, kind=job.kind)
        return SupervisorAction(
            job_id=job.id,
            tenant=job.tenant,
            kind=job.kind,
            action="failed",
            redispatches=job.redispatches - 1,
        )

    # ---- periodic passes ---------------------------------------------------------------------
    def run_forever(self, interval_s: float | None = None) -> None:
        """Run a pass every ``interval_s`` (default :func:`interval_for`) until
        :meth:`stop`; a failing pass (database down) is logged and the next one runs."""
        every = interval_for(self.settings) if interval_s is None else max(0.05, interval_s)
        log.info("job supervisor started", interval_s=every, stall_timeout_s=self.stall_timeout_s)
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:
                log.error("job supervisor pass failed", error=f"{type(exc).__name__}: {exc}")
            self._stop.wait(every)
        log.info("job supervisor stopped")

    def start(self, interval_s: float | None = None) -> threading.Thread:
        """Run :meth:`run_forever` in a daemon thread (once); returns the thread."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run_forever, args=(interval_s,), name="job-supervisor", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the periodic passes (waits up to ``timeout_s`` for a pass to end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
