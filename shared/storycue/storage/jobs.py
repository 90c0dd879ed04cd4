"""Asynchronous jobs in the metadata database: state machine, inputs, results, progress.

A job belongs to a tenant; every method takes the tenant and no query crosses tenants
(a job of another tenant reads exactly like a missing one). Workers learn a job's tenant
once with :meth:`JobStore.tenant_of` and pass it on.

States and the legal transitions (anything else raises :class:`InvalidTransitionError`)::

    queued  -> running | cancelled | failed
    running -> succeeded | failed | cancelled
    running -> queued        (only to retry after a worker was lost)

``queued -> failed`` exists for jobs that can never start (a dead-lettered task, a
dispatch that failed). Every transition is a compare-and-set on the current state, so two
workers can never both start one job: :meth:`JobStore.start` returns ``True`` to one only.

Results are one row per ``(job, item_index)``: :meth:`JobStore.record_result` upserts, and
``progress_done`` grows by one only when an item's first result is written, so re-running
an item (after a crash, a redelivered task) never duplicates a result nor counts twice.
:meth:`JobStore.record_results` does the same for a chunk of items in one transaction (a
bulk worker's chunk of stories: one commit, not one per story).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

from sqlalchemy import Engine, Select, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storycue.errors import InvalidInputError, NotFoundError, StorycueError, TooManyJobsError
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.storage.orm import JobItemRow, JobResultRow, JobRow, utcnow

log = get_logger(__name__)

JobKind = Literal["match", "ingest", "evaluate", "train"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
TERMINAL_STATES: frozenset[JobState] = frozenset({"succeeded", "failed", "cancelled"})

#: The legal transitions of the state machine.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    "queued": frozenset({"running", "cancelled", "failed"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "queued"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

#: States of a job that still holds (or waits for) a worker: what the limits count.
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running")


@dataclass(frozen=True)
class JobLimits:
    """How many unfinished jobs one tenant may have: in all, and per kind."""

    max_active: int
    by_kind: Mapping[str, int]
    retry_after_s: int = 30


#: SQLite has no advisory locks; embedded mode is one process, so a lock of the process
#: makes count-then-insert atomic there (PostgreSQL uses a per-tenant advisory lock).
_sqlite_create_lock = threading.Lock()

#: Largest page of jobs or results returned at once.
MAX_PAGE = 1000
_INSERT_CHUNK = 1000
_MAX_ITEM_ID = 200
_MAX_ERROR_MESSAGE = 4000


class InvalidTransitionError(StorycueError):
    """A job state change the state machine does not allow (or another writer won)."""

    code = "invalid_transition"


class JobNotRunningError(InvalidTransitionError):
    """A worker wrote to a job that is no longer running (cancelled, finished)."""

    code = "job_not_running"


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored (an immutable snapshot)."""

    id: str
    tenant: str
    kind: JobKind
    state: JobState
    params: dict[str, Any]
    catalogue_id: int | None
    progress_done: int
    progress_total: int
    error_code: str | None
    error_message: str | None
    cancel_requested: bool
    model: ModelIdentity | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    #: Times the supervisor sent the job's missing work again (it was stalled).
    redispatches: int = 0

    @property
    def terminal(self) -> bool:
        """Whether the job has finished (succeeded, failed or cancelled)."""
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class JobItem:
    """One input of a job."""

    index: int
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class JobResult:
    """The result of one item of a job."""

    index: int
    ok: bool
    result: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The result of one item, to record (:meth:`JobStore.record_results`)."""

    index: int
    result: Mapping[str, Any]
    ok: bool = True


#: Item indexes per ``IN (...)`` list (well under SQLite's and PostgreSQL's parameter limits).
_IN_CHUNK = 500


def _job(row: JobRow) -> Job:
    model = None
    if row.model_name and row.model_version and row.model_dim:
        model = ModelIdentity(name=row.model_name, version=row.model_version, dim=row.model_dim)
    created = _aware(row.created_at)
    updated = _aware(row.updated_at)
    assert created is not None and updated is not None
    return Job(
        id=row.id,
        tenant=row.tenant,
        kind=cast(JobKind, row.kind),
        state=cast(JobState, row.state),
        params=dict(row.params or {}),
        catalogue_id=row.catalogue_id,
        progress_done=row.progress_done,
        progress_total=row.progress_total,
        error_code=row.error_code,
        error_message=row.error_message,
        cancel_requested=bool(row.cancel_requested),
        model=model,
        attempts=row.attempts,
        created_at=created,
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
        updated_at=updated,
        redispatches=int(row.redispatches or 0),
    )


def _result(row: JobResultRow) -> JobResult:
    created = _aware(row.created_at)
    updated = _aware(row.updated_at)
    assert created is not None and updated is not None
    return JobResult(
        index=row.item_index,
        ok=bool(row.ok),
        result=dict(row.result or {}),
        created_at=created,
        updated_at=updated,
    )


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(
            f"limit must be between 1 and {MAX_PAGE}, got {limit}", detail={"field": "limit"}
        )


#: Page cursors have a stated grammar, so that every cursor the OpenAPI schema allows is a
#: page position the server can answer (a well-formed cursor past the end gives an empty
#: page): a position in a sequence of numbers (a track id, an item index), or a job's
#: creation time in microseconds since the epoch and its id (:data:`JOB_ID`).
NUMBER_CURSOR = r"^[0-9]{1,19}$"
#: Job ids (uuid4 strings from the gateway; letters, digits, ``_`` and ``-`` in general).
JOB_ID = r"^[A-Za-z0-9_\-]{1,64}$"
JOB_CURSOR = r"^[0-9]{1,16}_[A-Za-z0-9_\-]{1,64}$"
_MAX_POSITION = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _invalid_cursor() -> InvalidInputError:
    return InvalidInputError("invalid page cursor", detail={"field": "cursor"})


def number_cursor(position: int) -> str:
    """The cursor of the page after ``position`` (a track id, an item index)."""
    return str(position)


def parse_number_cursor(cursor: str) -> int:
    """The position of a :data:`NUMBER_CURSOR`; :class:`InvalidInputError` when malformed."""
    if not re.fullmatch(NUMBER_CURSOR, cursor):
        raise _invalid_cursor()
    return min(int(cursor), _MAX_POSITION)


def job_cursor(created_at: datetime, job_id: str) -> str:
    """The cursor of the page after this job (newest first)."""
    aware = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    return f"{(aware - _EPOCH) // timedelta(microseconds=1)}_{job_id}"


def parse_job_cursor(cursor: str) -> tuple[datetime, str]:
    """(creation time, job id) of a :data:`JOB_CURSOR` (time aware, UTC)."""
    if not re.fullmatch(JOB_CURSOR, cursor):
        raise _invalid_cursor()
    micros, job_id = cursor.split("_", 1)
    return _EPOCH + timedelta(microseconds=int(micros)), job_id


def _truncate(message: str | None) -> str | None:
    if message is None:
        return None
    return message if len(message) <= _MAX_ERROR_MESSAGE else message[:_MAX_ERROR_MESSAGE] + "…"


class JobStore:
    """Jobs, their inputs and their results, on the metadata database's engine.

    Build it on the engine of a migrated :class:`~storycue.storage.MetadataStore`
    (``JobStore(metadata.engine)``). Thread-safe: each call uses its own session.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @staticmethod
    def _owned(s: Session, tenant: str, job_id: str) -> JobRow | None:
        return s.scalar(select(JobRow).where(JobRow.id == job_id, JobRow.tenant == tenant))

    # ---- creation and reading ----------------------------------------------------------------
    def create(
        self,
        tenant: str,
        kind: JobKind,
        params: Mapping[str, Any] | None = None,
        *,
        items: Iterable[tuple[str, str]] | None = None,
        total: int | None = None,
        catalogue_id: int | None = None,
        model: ModelIdentity | None = None,
        job_id: str | None = None,
        limits: JobLimits | None = None,
    ) -> Job:
        """Create a queued job with its inputs ``items`` (``(item_id, text)`` pairs).

        ``progress_total`` is the number of items, or ``total`` for a job without stored
        inputs (evaluate and train jobs have one result). All in one transaction. With
        ``limits``, raises :class:`TooManyJobsError` when the tenant already has as many
        queued or running jobs (of this kind) as they allow; the count and the insert are
        atomic (per-tenant advisory lock on PostgreSQL, a process lock on SQLite).
        """
        if not tenant:
            raise InvalidInputError("tenant must not be empty")
        if kind not in JOB_KINDS:
            raise InvalidInputError(f"unknown job kind {kind!r}; one of {', '.join(JOB_KINDS)}")
        sqlite = self._engine.dialect.name == "sqlite"
        if limits is not None and sqlite:
            with _sqlite_create_lock:
                return self._create(
                    tenant, kind, params, items, total, catalogue_id, model, job_id, limits
                )
        return self._create(tenant, kind, params, items, total, catalogue_id, model, job_id, limits)

    def active_counts(self, tenant: str) -> dict[str, int]:
        """The tenant's queued or running jobs per kind (every kind present)."""
        with self._session() as s:
            return self._active_counts(s, tenant)

    @staticmethod
    def _active_counts(s: Session, tenant: str) -> dict[str, int]:
        stmt = (
            select(JobRow.kind, func.count())
            .where(JobRow.tenant == tenant, JobRow.state.in_(ACTIVE_STATES))
            .group_by(JobRow.kind)
        )
        found = {str(k): int(n) for k, n in s.execute(stmt)}
        return {k: found.get(k, 0) for k in JOB_KINDS}

    def _check_limits(self, s: Session, tenant: str, kind: JobKind, limits: JobLimits) -> None:
        if self._engine.dialect.name == "postgresql":
            # Serialises job creation per tenant until this transaction ends.
            s.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"storycue-jobs:{tenant}"))))
        counts = self._active_counts(s, tenant)
        total = sum(counts.values())
        kind_limit = limits.by_kind.get(kind)
        if kind_limit is not None and counts[kind] >= kind_limit:
            raise TooManyJobsError(
                f"tenant {tenant!r} already has {counts[kind]} unfinished {kind} job(s), the "
                f"limit for {kind} jobs; retry when one has finished",
                retry_after_s=limits.retry_after_s,
                detail={"kind": kind, "active": counts[kind], "limit": kind_limit},
            )
        if total >= limits.max_active:
            raise TooManyJobsError(
                f"tenant {tenant!r} already has {total} unfinished jobs, the limit; retry "
                "when one has finished",
                retry_after_s=limits.retry_after_s,
                detail={"active": total, "limit": limits.max_active},
            )

    def _create(
        self,
        tenant: str,
        kind: JobKind,
        params: Mapping[str, Any] | None,
        items: Iterable[tuple[str, str]] | None,
        total: int | None,
        catalogue_id: int | None,
        model: ModelIdentity | None,
        job_id: str | None,
        limits: JobLimits | None,
    ) -> Job:
        jid = job_id or str(uuid.uuid4())
        if not re.fullmatch(JOB_ID, jid):
            raise InvalidInputError(f"job ids are 1 to 64 letters, digits, _ or -; got {jid!r}")
        with self._session() as s:
            if limits is not None:
                self._check_limits(s, tenant, kind, limits)
            row = JobRow(
                id=jid,
                tenant=tenant,
                kind=kind,
                state="queued",
                params=dict(params or {}),
                catalogue_id=catalogue_id,
                progress_done=0,
                progress_total=0,
                cancel_requested=False,
                attempts=0,
                redispatches=0,
                model_name=model.name if model else None,
                model_version=model.version if model else None,
                model_dim=model.dim if model else None,
            )
            s.add(row)
            s.flush()
            n = 0
            if items is not None:
                batch: list[dict[str, Any]] = []
                for item_id, text in items:
                    if len(item_id) > _MAX_ITEM_ID:
                        raise InvalidInputError(
                            f"item {n}: id is longer than {_MAX_ITEM_ID} characters",
                            detail={"index": n},
                        )
                    batch.append({"job_id": jid, "item_index": n, "item_id": item_id, "text": text})
                    n += 1
                    if len(batch) >= _INSERT_CHUNK:
                        s.execute(insert(JobItemRow), batch)
                        batch = []
                if batch:
                    s.execute(insert(JobItemRow), batch)
            row.progress_total = n if total is None else total
            s.flush()
            job = _job(row)
        log.info("job created", job_id=jid, tenant=tenant, kind=kind, total=job.progress_total)
        return job

    def get(self, tenant: str, job_id: str) -> Job | None:
        """The job of ``tenant`` with this id, or ``None`` (also for another tenant's job)."""
        with self._session() as s:
            row = self._owned(s, tenant, job_id)
            return None if row is None else _job(row)

    def require(self, tenant: str, job_id: str) -> Job:
        """The job, or :class:`NotFoundError` (the same for another tenant's job)."""
        job = self.get(tenant, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist", detail={"job_id": job_id})
        return job

    def tenant_of(self, job_id: str) -> str | None:
        """The tenant owning a job (for workers, which only receive job ids)."""
        with self._session() as s:
            tenant: str | None = s.scalar(select(JobRow.tenant).where(JobRow.id == job_id))
            return tenant

    def list_jobs(
        self,
        tenant: str,
        *,
        state: JobState | None = None,
        kind: JobKind | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """A page of the tenant's jobs, newest first, and the cursor of the next page."""
        _check_limit(limit)
        stmt = select(JobRow).where(JobRow.tenant == tenant)
        if state is not None:
            stmt = stmt.where(JobRow.state == state)
        if kind is not None:
            stmt = stmt.where(JobRow.kind == kind)
        if cursor is not None:
            created, last_id = parse_job_cursor(cursor)
            if self._engine.dialect.name == "sqlite":  # SQLite hands back naive UTC times
                created = created.replace(tzinfo=None)
            stmt = stmt.where(
                or_(
                    JobRow.created_at < created,
                    and_(JobRow.created_at == created, JobRow.id < last_id),
                )
            )
        stmt = stmt.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit + 1)
        with self._session() as s:
            rows = list(s.scalars(stmt))
        jobs = [_job(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = job_cursor(last.created_at, last.id)
        return jobs, next_cursor

    def count_by_state(self, tenant: str | None = None) -> dict[str, int]:
        """Number of jobs per state (of one tenant, or all; for metrics)."""
        stmt = select(JobRow.state, func.count()).group_by(JobRow.state)
        if tenant is not None:
            stmt = stmt.where(JobRow.tenant == tenant)
        with self._session() as s:
            found = {str(state): int(n) for state, n in s.execute(stmt)}
        return {state: found.get(state, 0) for state in JOB_STATES}

    def count_by_kind_and_state(self) -> dict[str, dict[str, int]]:
        """Number of jobs of every tenant per kind and state (for metrics)."""
        stmt = select(JobRow.kind, JobRow.state, func.count()).group_by(JobRow.kind, JobRow.state)
        out: dict[str, dict[str, int]] = {k: dict.fromkeys(JOB_STATES, 0) for k in JOB_KINDS}
        with self._session() as s:
            for kind, state, n in s.execute(stmt):
                out.setdefault(str(kind), dict.fromkeys(JOB_STATES, 0))[str(state)] = int(n)
        return out

    # ---- the state machine -----------------------------------------------------------------
    def transition(
        self,
        tenant: str,
        job_id: str,
        to: JobState,
        *,
        expect: JobState | Collection[JobState] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> Job:
        """Move a job to ``to`` with a compare-and-set on its current state.

        ``expect`` restricts the states the move may start from (default: any state with
        a legal edge to ``to``). Raises :class:`NotFoundError` for a missing job and
        :class:`InvalidTransitionError` when the move is illegal or another writer
        changed the state first.
        """
        if to not in JOB_STATES:
            raise InvalidInputError(f"unknown job state {to!r}")
        allowed: set[JobState] = {src for src, dst in TRANSITIONS.items() if to in dst}
        if expect is not None:
            wanted = {expect} if isinstance(expect, str) else set(expect)
            allowed &= wanted
        with self._session() as s:
            row = self._owned(s, tenant, job_id)
            if row is None:
                raise NotFoundError(f"job {job_id} does not exist", detail={"job_id": job_id})
            current = cast(JobState, row.state)
            if current not in allowed:
                raise InvalidTransitionError(
                    f"job {job_id} cannot go from {current} to {to}",
                    detail={"job_id": job_id, "state": current, "to": to},
                )
            now = utcnow()
            values: dict[str, Any] = {"state": to, "updated_at": now}
            if to == "running":
                values["started_at"] = now
                values["attempts"] = JobRow.attempts + 1
            elif to == "queued":
                values["started_at"] = None
            if to in TERMINAL_STATES:
                values["finished_at"] = now
            if to in ("failed", "cancelled") or error_code is not None:
                values["error_code"] = error_code
                values["error_message"] = _truncate(error_message)
            result = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.tenant == tenant, JobRow.state == current)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                raise InvalidTransitionError(
                    f"job {job_id} changed state concurrently (was {current}, wanted {to})",
                    detail={"job_id": job_id, "state": current, "to": to},
                )
        job = self.require(tenant, job_id)
        log.info("job state", job_id=job_id, tenant=tenant, state=to, previous=current)
        return job

    def start(self, tenant: str, job_id: str) -> bool:
        """Compare-and-set ``queued -> running``; ``True`` for exactly one caller."""
        try:
            self.transition(tenant, job_id, "running", expect="queued")
        except InvalidTransitionError:
            return False
        return True

    def requeue(self, tenant: str, job_id: str) -> Job:
        """``running -> queued``: the worker running it was lost and it will be retried."""
        return self.transition(tenant, job_id, "queued", expect="running")

    def succeed(self, tenant: str, job_id: str) -> Job:
        """``running -> succeeded``."""
        return self.transition(tenant, job_id, "succeeded", expect="running")

    def fail(self, tenant: str, job_id: str, error_code: str, error_message: str) -> Job:
        """``queued|running -> failed`` with the error."""
        return self.transition(
            tenant, job_id, "failed", error_code=error_code, error_message=error_message
        )

    def cancel(self, tenant: str, job_id: str) -> Job:
        """``queued|running -> cancelled`` (workers call it when they see the request)."""
        return self.transition(
            tenant,
            job_id,
            "cancelled",
            error_code="cancelled",
            error_message="the job was cancelled on request",
        )

    def request_cancel(self, tenant: str, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one by flagging it.

        The worker running a flagged job stops between batches and moves it to
        ``cancelled``. Raises :class:`InvalidTransitionError` for a finished job.
        """
        for _ in range(3):
            job = self.require(tenant, job_id)
            if job.terminal:
                raise InvalidTransitionError(
                    f"job {job_id} has already {job.state}; it cannot be cancelled",
                    detail={"job_id": job_id, "state": job.state},
                )
            if job.state == "queued":
                try:
                    return self.cancel(tenant, job_id)
                except InvalidTransitionError:
                    continue  # it started meanwhile: flag it instead
            with self._session() as s:
                result = s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.tenant == tenant, JobRow.state == "running")
                    .values(cancel_requested=True, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                flagged = getattr(result, "rowcount", 0) == 1
            if flagged:
                log.info("job cancel requested", job_id=job_id, tenant=tenant)
                return self.require(tenant, job_id)
        raise InvalidTransitionError(
            f"job {job_id} kept changing state; try again", detail={"job_id": job_id}
        )

    def cancel_requested(self, tenant: str, job_id: str) -> bool:
        """Whether cancelling was requested (or the job is no longer running)."""
        with self._session() as s:
            row = s.execute(
                select(JobRow.state, JobRow.cancel_requested).where(
                    JobRow.id == job_id, JobRow.tenant == tenant
                )
            ).first()
        if row is None:
            return True
        return bool(row[1]) or row[0] != "running"

    def finish_if_complete(self, tenant: str, job_id: str) -> Job:
        """Move a running job whose every item has a result to ``succeeded``.

        Returns the job as it is afterwards (unchanged when not complete, or when another
        worker finished it first).
        """
        job = self.require(tenant, job_id)
        if job.state == "running" and job.progress_done >= job.progress_total:
            try:
                return self.succeed(tenant, job_id)
            except InvalidTransitionError:
                return self.require(tenant, job_id)
        return job

    def set_model(self, tenant: str, job_id: str, model: ModelIdentity) -> None:
        """Record which model a job runs with."""
        with self._session() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.tenant == tenant)
                .values(
                    model_name=model.name,
                    model_version=model.version,
                    model_dim=model.dim,
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )

    # ---- the supervisor: stalled jobs --------------------------------------------------------
    def stalled(self, older_than: datetime, *, limit: int = 100) -> list[Job]:
        """Unfinished jobs of every tenant not updated since ``older_than``, oldest first.

        Running jobs whose progress stopped, and queued jobs (dispatched at creation)
        that no worker started: in both cases the broker may have lost their messages.
        Any write to a job (a result, a state change, a re-dispatch) moves its
        ``updated_at``.
        """
        _check_limit(limit)
        stmt = (
            select(JobRow)
            .where(JobRow.state.in_(("queued", "running")), JobRow.updated_at < older_than)
            .order_by(JobRow.updated_at, JobRow.id)
            .limit(limit)
        )
        with self._session() as s:
            return [_job(r) for r in s.scalars(stmt)]

    def missing_indexes(self, tenant: str, job_id: str) -> list[int]:
        """Item indexes of a job's stored inputs that have no result yet, ascending."""
        has_result = (
            select(JobResultRow.item_index)
            .where(
                JobResultRow.job_id == JobItemRow.job_id,
                JobResultRow.item_index == JobItemRow.item_index,
            )
            .exists()
        )
        stmt = (
            select(JobItemRow.item_index)
            .join(JobRow, JobRow.id == JobItemRow.job_id)
            .where(JobItemRow.job_id == job_id, JobRow.tenant == tenant, ~has_result)
            .order_by(JobItemRow.item_index)
        )
        with self._session() as s:
            return [int(i) for i in s.scalars(stmt)]

    def touch(self, job_id: str) -> bool:
        """Move a running job's ``updated_at`` to now (a task's heartbeat, so that a long
        task that writes no result yet is not taken as stalled); ``False`` when the job
        is not running."""
        with self._session() as s:
            result = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state == "running")
                .values(updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return getattr(result, "rowcount", 0) == 1

    def claim_redispatch(self, job: Job, older_than: datetime) -> Job | None:
        """Compare-and-set: claim the re-dispatch of a stalled job seen as ``job``.

        Succeeds (returns the job as updated: ``redispatches`` + 1, ``updated_at`` now)
        only while the job is still unfinished, still not updated since ``older_than``
        and not re-dispatched by anyone else since it was read; ``None`` otherwise, so
        that of several supervisors exactly one re-dispatches a job in one stall window.
        """
        with self._session() as s:
            result = s.execute(
                update(JobRow)
                .where(
                    JobRow.id == job.id,
                    JobRow.tenant == job.tenant,
                    JobRow.state.in_(("queued", "running")),
                    JobRow.updated_at < older_than,
                    JobRow.redispatches == job.redispatches,
                )
                .values(redispatches=JobRow.redispatches + 1, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                return None
        return self.get(job.tenant, job.id)

    # ---- inputs and results ----------------------------------------------------------------
    def items(
        self, tenant: str, job_id: str, indexes: Sequence[int] | None = None
    ) -> list[JobItem]:
        """Inputs of a job (all, or those at ``indexes``), by index."""
        stmt = (
            select(JobItemRow)
            .join(JobRow, JobRow.id == JobItemRow.job_id)
            .where(JobItemRow.job_id == job_id, JobRow.tenant == tenant)
            .order_by(JobItemRow.item_index)
        )
        out: list[JobItem] = []
        with self._session() as s:
            if indexes is None:
                rows = list(s.scalars(stmt))
            else:
                wanted = sorted(set(indexes))
                rows = []
                for i in range(0, len(wanted), 500):
                    rows.extend(
                        s.scalars(stmt.where(JobItemRow.item_index.in_(wanted[i : i + 500])))
                    )
            out = [JobItem(index=r.item_index, item_id=r.item_id, text=r.text) for r in rows]
        return out

    def item_count(self, tenant: str, job_id: str) -> int:
        """Number of stored inputs of a job."""
        with self._session() as s:
            n = s.scalar(
                select(func.count())
                .select_from(JobItemRow)
                .join(JobRow, JobRow.id == JobItemRow.job_id)
                .where(JobItemRow.job_id == job_id, JobRow.tenant == tenant)
            )
        return int(n or 0)

    def done_indexes(
        self, tenant: str, job_id: str, indexes: Sequence[int] | None = None
    ) -> set[int]:
        """Item indexes (of ``indexes``, or all) that already have a result."""
        stmt = (
            select(JobResultRow.item_index)
            .join(JobRow, JobRow.id == JobResultRow.job_id)
            .where(JobResultRow.job_id == job_id, JobRow.tenant == tenant)
        )
        with self._session() as s:
            if indexes is None:
                return {int(i) for i in s.scalars(stmt)}
            return self._indexes_in(s, stmt, indexes)

    @staticmethod
    def _indexes_in(s: Session, stmt: Select[Any], indexes: Iterable[int]) -> set[int]:
        """The item indexes ``stmt`` selects among ``indexes``, asked :data:`_IN_CHUNK` at a
        time."""
        wanted = sorted(set(indexes))
        found: set[int] = set()
        for i in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[i : i + _IN_CHUNK]
            found.update(int(x) for x in s.scalars(stmt.where(JobResultRow.item_index.in_(chunk))))
        return found

    def record_result(
        self,
        tenant: str,
        job_id: str,
        item_index: int,
        result: Mapping[str, Any],
        *,
        ok: bool = True,
    ) -> bool:
        """Write (or rewrite) the result of one item; ``True`` when it was the first.

        The first result of an item also counts one item of progress, in the same
        transaction; rewriting it changes nothing else. Only a running job takes results:
        otherwise :class:`JobNotRunningError` (the worker should stop).
        """
        if item_index < 0:
            raise InvalidInputError(f"item_index must be >= 0, got {item_index}")
        payload = dict(result)

        def running(s: Session) -> JobRow:
            return self._running(s, tenant, job_id, f"result {item_index}")

        try:
            with self._session() as s:
                running(s)
                s.add(JobResultRow(job_id=job_id, item_index=item_index, ok=ok, result=payload))
                s.flush()
                s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.tenant == tenant)
                    .values(progress_done=JobRow.progress_done + 1, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            return True
        except IntegrityError:
            pass
        with self._session() as s:
            running(s)
            s.execute(
                update(JobResultRow)
                .where(JobResultRow.job_id == job_id, JobResultRow.item_index == item_index)
                .values(ok=ok, result=payload, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return False

    def _running(self, s: Session, tenant: str, job_id: str, what: str) -> JobRow:
        """The job's row; :class:`NotFoundError` when the tenant has no such job,
        :class:`JobNotRunningError` unless it is running."""
        row = self._owned(s, tenant, job_id)
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist", detail={"job_id": job_id})
        if row.state != "running":
            raise JobNotRunningError(
                f"job {job_id} is {row.state}, not running: {what} dropped",
                detail={"job_id": job_id, "state": row.state},
            )
        return row

    def record_results(self, tenant: str, job_id: str, results: Sequence[ItemResult]) -> int:
        """Write (or rewrite) the results of several items in one transaction; how many
        were first results.

        The same contract as :meth:`record_result` item by item — each first result counts
        one item of progress, a rewrite changes only the row, only a running job takes
        results — at one commit per call instead of one per item (a bulk chunk of 1,024
        stories wrote 1,024 transactions). When another writer inserts some of the same
        items meanwhile (a redelivered chunk), the unique ``(job, item)`` key refuses the
        batch and it is written item by item, so nothing is counted twice.
        """
        items = list(results)
        if not items:
            return 0
        indexes = [it.index for it in items]
        if min(indexes) < 0:
            raise InvalidInputError(f"item indexes must be >= 0, got {min(indexes)}")
        if len(set(indexes)) != len(indexes):
            raise InvalidInputError("each item may appear once in a batch of results")
        what = f"{len(items)} results"
        try:
            with self._session() as s:
                self._running(s, tenant, job_id, what)
                stmt = select(JobResultRow.item_index).where(JobResultRow.job_id == job_id)
                existing = self._indexes_in(s, stmt, indexes)
                fresh = [it for it in items if it.index not in existing]
                if fresh:
                    s.execute(
                        insert(JobResultRow),
                        [
                            {
                                "job_id": job_id,
                                "item_index": it.index,
                                "ok": it.ok,
                                "result": dict(it.result),
                            }
                            for it in fresh
                        ],
                    )
                    s.execute(
                        update(JobRow)
                        .where(JobRow.id == job_id, JobRow.tenant == tenant)
                        .values(
                            progress_done=JobRow.progress_done + len(fresh), updated_at=utcnow()
                        )
                        .execution_options(synchronize_session=False)
                    )
                for it in items:
                    if it.index in existing:
                        s.execute(
                            update(JobResultRow)
                            .where(
                                JobResultRow.job_id == job_id, JobResultRow.item_index == it.index
                            )
                            .values(ok=it.ok, result=dict(it.result), updated_at=utcnow())
                            .execution_options(synchronize_session=False)
                        )
            return len(fresh)
        except IntegrityError:
            log.info("results raced another writer; writing item by item", job_id=job_id)
        return sum(
            self.record_result(tenant, job_id, it.index, it.result, ok=it.ok) for it in items
        )

    def results(
        self, tenant: str, job_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[JobResult], str | None]:
        """A page of a job's results by item index, and the cursor of the next page.

        Raises :class:`NotFoundError` for a job the tenant does not own.
        """
        _check_limit(limit)
        self.require(tenant, job_id)
        stmt = select(JobResultRow).where(JobResultRow.job_id == job_id)
        if cursor is not None:
            stmt = stmt.where(JobResultRow.item_index > parse_number_cursor(cursor))
        stmt = stmt.order_by(JobResultRow.item_index).limit(limit + 1)
        with self._session() as s:
            rows = list(s.scalars(stmt))
        page = [_result(r) for r in rows[:limit]]
        next_cursor = number_cursor(page[-1].index) if len(rows) > limit else None
        return page, next_cursor

    def result_counts(self, tenant: str, job_id: str) -> dict[str, int]:
        """``{"ok": n, "failed": m}`` over a job's results."""
        stmt = (
            select(JobResultRow.ok, func.count())
            .join(JobRow, JobRow.id == JobResultRow.job_id)
            .where(JobResultRow.job_id == job_id, JobRow.tenant == tenant)
            .group_by(JobResultRow.ok)
        )
        with self._session() as s:
            counts = {bool(ok): int(n) for ok, n in s.execute(stmt)}
        return {"ok": counts.get(True, 0), "failed": counts.get(False, 0)}
