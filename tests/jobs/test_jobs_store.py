"""The job store: state machine, compare-and-set start, idempotent results, tenancy.

Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect

from storycue.errors import InvalidInputError, NotFoundError, TooManyJobsError
from storycue.identity import ModelIdentity
from storycue.storage import MetadataStore
from storycue.storage.jobs import (
    JOB_STATES,
    TRANSITIONS,
    InvalidTransitionError,
    ItemResult,
    JobLimits,
    JobNotRunningError,
    JobState,
    JobStore,
)

STORIES = [("s1", "A happy day."), ("s2", "A sad night."), ("s3", "A storm.")]


@pytest.fixture
def jobs(metadata: MetadataStore) -> JobStore:
    return JobStore(metadata.engine)


def _in_state(jobs: JobStore, state: JobState) -> str:
    """A job of tenant 't' driven to ``state`` along legal edges."""
    job = jobs.create("t", "match", {"top_k": 3}, items=STORIES)
    path: dict[JobState, list[JobState]] = {
        "queued": [],
        "running": ["running"],
        "succeeded": ["running", "succeeded"],
        "failed": ["running", "failed"],
        "cancelled": ["cancelled"],
    }
    for step in path[state]:
        jobs.transition("t", job.id, step, error_code="x" if step == "failed" else None)
    assert jobs.require("t", job.id).state == state
    return job.id


def test_migration_0002_creates_and_drops_its_tables(metadata: MetadataStore) -> None:
    new = {"api_keys", "jobs", "job_items", "job_results", "catalogue_models", "track_sources"}
    assert new <= set(inspect(metadata.engine).get_table_names())
    metadata.downgrade("0001")
    names = set(inspect(metadata.engine).get_table_names())
    assert not new & names
    assert {"catalogues", "tracks"} <= names
    metadata.migrate()
    assert metadata.is_up_to_date()
    assert new <= set(inspect(metadata.engine).get_table_names())


def test_create_stores_items_and_total(jobs: JobStore) -> None:
    ident = ModelIdentity(name="va-regression", version="1.0.0", dim=2)
    job = jobs.create("t", "match", {"top_k": 3}, items=STORIES, model=ident)
    assert job.state == "queued"
    assert (job.progress_done, job.progress_total) == (0, 3)
    assert job.model == ident
    assert job.attempts == 0 and not job.cancel_requested
    items = jobs.items("t", job.id)
    assert [(i.index, i.item_id, i.text) for i in items] == [
        (n, sid, text) for n, (sid, text) in enumerate(STORIES)
    ]
    assert [i.item_id for i in jobs.items("t", job.id, [2, 0])] == ["s1", "s3"]
    assert jobs.item_count("t", job.id) == 3
    single = jobs.create("t", "evaluate", {}, total=1)
    assert single.progress_total == 1 and jobs.items("t", single.id) == []


@pytest.mark.parametrize("src", JOB_STATES)
@pytest.mark.parametrize("dst", JOB_STATES)
def test_every_transition_is_legal_or_raises(jobs: JobStore, src: JobState, dst: JobState) -> None:
    job_id = _in_state(jobs, src)
    if dst in TRANSITIONS[src]:
        job = jobs.transition("t", job_id, dst)
        assert job.state == dst
        if dst in ("succeeded", "failed", "cancelled"):
            assert job.finished_at is not None
        if dst == "running":
            assert job.started_at is not None
    else:
        with pytest.raises(InvalidTransitionError):
            jobs.transition("t", job_id, dst)
        assert jobs.require("t", job_id).state == src


def test_retry_after_worker_loss_counts_attempts(jobs: JobStore) -> None:
    job = jobs.create("t", "ingest", {}, total=1)
    assert jobs.start("t", job.id)
    assert jobs.requeue("t", job.id).state == "queued"
    assert jobs.start("t", job.id)
    job2 = jobs.require("t", job.id)
    assert job2.attempts == 2 and job2.state == "running"
    with pytest.raises(InvalidTransitionError):
        jobs.requeue("t", _in_state(jobs, "queued"))


def test_compare_and_set_start_has_one_winner(jobs: JobStore) -> None:
    job = jobs.create("t", "train", {}, total=1)
    wins: list[bool] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        wins.append(jobs.start("t", job.id))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(wins) == [False, False, False, True]
    assert jobs.require("t", job.id).attempts == 1


def test_results_are_idempotent_per_item_and_paged(jobs: JobStore) -> None:
    job_id = _in_state(jobs, "running")
    assert jobs.record_result("t", job_id, 1, {"v": 1})
    assert not jobs.record_result("t", job_id, 1, {"v": 2})  # a re-run rewrites, once
    assert jobs.record_result("t", job_id, 0, {"v": 0}, ok=False)
    job = jobs.require("t", job_id)
    assert job.progress_done == 2
    assert jobs.done_indexes("t", job_id) == {0, 1}
    page, cursor = jobs.results("t", job_id, limit=1)
    assert [(r.index, r.ok, r.result) for r in page] == [(0, False, {"v": 0})]
    assert cursor is not None
    page2, cursor2 = jobs.results("t", job_id, limit=1, cursor=cursor)
    assert [(r.index, r.result) for r in page2] == [(1, {"v": 2})]
    assert cursor2 is None
    assert jobs.result_counts("t", job_id) == {"ok": 1, "failed": 1}
    assert jobs.finish_if_complete("t", job_id).state == "running"
    jobs.record_result("t", job_id, 2, {"v": 3})
    assert jobs.finish_if_complete("t", job_id).state == "succeeded"
    with pytest.raises(JobNotRunningError):
        jobs.record_result("t", job_id, 2, {"v": 4})
    with pytest.raises(InvalidInputError):
        jobs.results("t", job_id, cursor="not-a-cursor!")


def test_concurrent_writes_of_one_item_count_once(jobs: JobStore) -> None:
    job_id = _in_state(jobs, "running")
    barrier = threading.Barrier(4)
    firsts: list[bool] = []

    def worker(n: int) -> None:
        barrier.wait()
        firsts.append(jobs.record_result("t", job_id, 0, {"writer": n}))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(firsts) == [False, False, False, True]
    assert jobs.require("t", job_id).progress_done == 1
    assert len(jobs.results("t", job_id)[0]) == 1


def test_a_batch_of_results_is_one_write_with_the_same_contract(jobs: JobStore) -> None:
    job_id = _in_state(jobs, "running")
    assert jobs.record_result("t", job_id, 1, {"v": "before"})
    batch = [ItemResult(0, {"v": 0}), ItemResult(1, {"v": 1}, ok=False), ItemResult(2, {"v": 2})]
    assert jobs.record_results("t", job_id, batch) == 2  # item 1 was already there
    job = jobs.require("t", job_id)
    assert job.progress_done == 3
    page, _ = jobs.results("t", job_id)
    assert [(r.index, r.ok, r.result) for r in page] == [
        (0, True, {"v": 0}),
        (1, False, {"v": 1}),  # rewritten, not counted again
        (2, True, {"v": 2}),
    ]
    assert jobs.record_results("t", job_id, []) == 0
    assert jobs.record_results("t", job_id, batch[:1]) == 0  # a redelivered chunk
    assert jobs.require("t", job_id).progress_done == 3
    assert jobs.finish_if_complete("t", job_id).state == "succeeded"
    with pytest.raises(JobNotRunningError):
        jobs.record_results("t", job_id, batch)


def test_a_batch_of_results_refuses_bad_items_and_other_tenants(jobs: JobStore) -> None:
    job_id = _in_state(jobs, "running")
    with pytest.raises(InvalidInputError, match="once"):
        jobs.record_results("t", job_id, [ItemResult(0, {}), ItemResult(0, {})])
    with pytest.raises(InvalidInputError, match=">= 0"):
        jobs.record_results("t", job_id, [ItemResult(-1, {})])
    with pytest.raises(NotFoundError):
        jobs.record_results("other", job_id, [ItemResult(0, {})])
    assert jobs.require("t", job_id).progress_done == 0
    assert jobs.done_indexes("t", job_id) == set()


def test_overlapping_batches_from_concurrent_writers_count_each_item_once(jobs: JobStore) -> None:
    job = jobs.create("t", "match", {}, items=[(f"s{i}", "x") for i in range(40)])
    jobs.transition("t", job.id, "running")
    barrier = threading.Barrier(4)
    firsts: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        # Four writers, each a window of 20 items overlapping its neighbours'.
        batch = [ItemResult(i, {"writer": n}) for i in range(n * 6, n * 6 + 20)]
        barrier.wait()
        try:
            firsts.append(jobs.record_results("t", job.id, batch))
        except BaseException as exc:  # surfaced below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    written = jobs.done_indexes("t", job.id)
    assert written == set(range(38))
    assert sum(firsts) == len(written) == jobs.require("t", job.id).progress_done


def test_cancel_queued_at_once_running_by_flag(jobs: JobStore) -> None:
    queued = _in_state(jobs, "queued")
    assert jobs.request_cancel("t", queued).state == "cancelled"
    running = _in_state(jobs, "running")
    flagged = jobs.request_cancel("t", running)
    assert flagged.state == "running" and flagged.cancel_requested
    assert jobs.cancel_requested("t", running)
    assert jobs.cancel("t", running).state == "cancelled"
    for state in ("succeeded", "failed", "cancelled"):
        with pytest.raises(InvalidTransitionError):
            jobs.request_cancel("t", _in_state(jobs, state))  # type: ignore[arg-type]


def test_failure_records_the_error(jobs: JobStore) -> None:
    job_id = _in_state(jobs, "running")
    job = jobs.fail("t", job_id, "dataset_not_found", "no data " * 1000)
    assert job.state == "failed" and job.error_code == "dataset_not_found"
    assert job.error_message is not None and len(job.error_message) <= 4001


def test_tenants_never_see_each_other(jobs: JobStore) -> None:
    mine = jobs.create("a", "match", {}, items=STORIES)
    jobs.create("b", "match", {}, items=STORIES)
    assert jobs.get("b", mine.id) is None
    with pytest.raises(NotFoundError):
        jobs.require("b", mine.id)
    with pytest.raises(NotFoundError):
        jobs.transition("b", mine.id, "running")
    with pytest.raises(NotFoundError):
        jobs.start("b", mine.id)
    with pytest.raises(NotFoundError):
        jobs.request_cancel("b", mine.id)
    with pytest.raises(NotFoundError):
        jobs.results("b", mine.id)
    assert jobs.items("b", mine.id) == []
    jobs.start("a", mine.id)
    with pytest.raises(NotFoundError):
        jobs.record_result("b", mine.id, 0, {})
    assert jobs.tenant_of(mine.id) == "a"
    assert mine.id not in {j.id for j in jobs.list_jobs("b")[0]}


def test_listing_pages_newest_first(jobs: JobStore) -> None:
    made = [jobs.create("t", "evaluate", {"n": n}, total=1).id for n in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = jobs.list_jobs("t", limit=2, cursor=cursor)
        seen.extend(j.id for j in page)
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 5
    created = [jobs.require("t", j).created_at for j in seen]
    assert created == sorted(created, reverse=True)
    jobs.start("t", made[0])
    assert [j.id for j in jobs.list_jobs("t", state="running")[0]] == [made[0]]
    assert jobs.count_by_state("t")["queued"] == 4
    with pytest.raises(InvalidInputError):
        jobs.list_jobs("t", limit=0)


def test_bad_creation_input(jobs: JobStore, metadata: MetadataStore) -> None:
    with pytest.raises(InvalidInputError):
        jobs.create("", "match", {})
    with pytest.raises(InvalidInputError):
        jobs.create("t", "dance", {})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        jobs.create("t", "match", {}, items=[("x" * 201, "text")])
    # the failed creation left nothing behind
    assert jobs.list_jobs("t")[0] == []


LIMITS = JobLimits(max_active=3, by_kind={"train": 1}, retry_after_s=7)


def test_limits_count_unfinished_jobs_per_tenant_and_kind(jobs: JobStore) -> None:
    first = jobs.create("t", "train", {}, total=1, limits=LIMITS)
    with pytest.raises(TooManyJobsError) as err:
        jobs.create("t", "train", {}, total=1, limits=LIMITS)
    assert err.value.retry_after_s == 7
    assert err.value.detail == {"kind": "train", "active": 1, "limit": 1}
    # another tenant has its own budget; other kinds count against the total only
    jobs.create("u", "train", {}, total=1, limits=LIMITS)
    jobs.create("t", "match", {}, items=STORIES, limits=LIMITS)
    jobs.create("t", "evaluate", {}, total=1, limits=LIMITS)
    with pytest.raises(TooManyJobsError) as err:
        jobs.create("t", "match", {}, items=STORIES, limits=LIMITS)
    assert err.value.detail == {"active": 3, "limit": 3}
    assert jobs.active_counts("t") == {"match": 1, "ingest": 0, "evaluate": 1, "train": 1}
    # a finished job frees its place (running still counts)
    assert jobs.start("t", first.id)
    with pytest.raises(TooManyJobsError):
        jobs.create("t", "train", {}, total=1, limits=LIMITS)
    jobs.succeed("t", first.id)
    jobs.create("t", "train", {}, total=1, limits=LIMITS)
    # without limits (internal callers) nothing is refused
    jobs.create("t", "train", {}, total=1)


def test_limits_hold_under_concurrent_creation(jobs: JobStore) -> None:
    """Eight threads create a train job at once: exactly one gets in (count + insert are
    one atomic step on either database)."""
    barrier = threading.Barrier(8)
    won: list[str] = []
    refused: list[int] = []

    def worker() -> None:
        barrier.wait()
        try:
            won.append(jobs.create("t", "train", {}, total=1, limits=LIMITS).id)
        except TooManyJobsError:
            refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    assert jobs.active_counts("t")["train"] == 1
