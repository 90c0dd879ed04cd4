"""Bulk match jobs (JSON and JSON lines), status, paged results, cancel; evaluation and
training jobs (validation, and failure with a clear code when the data is missing)."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from apigw import Gateway

from storycue.jobs import run_match_items

STORIES = [
    {"id": f"s{n}", "text": text}
    for n, text in enumerate(
        [
            "She laughed and danced all night at the wedding, happier than ever.",
            "He sat alone by the grave in the cold rain, crying quietly.",
            "The monster crept closer in the dark and she held her breath in fear.",
            "A calm, slow afternoon: tea, a cat asleep on the windowsill, soft light.",
            "Furious, he slammed the door and shouted until his voice broke.",
        ]
    )
]


def assert_same_sheet(got: Any, want: Any, path: str = "sheet") -> None:
    """Equal structure and values, floats equal to float32 rounding (1e-5 relative)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), path
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for k in want:
            assert_same_sheet(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_sheet(g, w, f"{path}[{i}]")
    else:
        assert got == want, path


def test_match_job_runs_in_chunks_and_pages_results(gateway: Gateway) -> None:
    h = gateway.h("a")
    r = gateway.client.post(
        "/v1/jobs/match", json={"stories": STORIES, "top_k": 2, "catalogue": "a-only"}, headers=h
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "match" and job["progress"]["total"] == 5
    done = gateway.wait("a", job["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"] == {"done": 5, "total": 5, "fraction": 1.0}
    assert done["model"]["name"] == "va-regression"
    results: list[dict[str, object]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = gateway.client.get(f"/v1/jobs/{job['id']}/results", params=params, headers=h)
        assert r.status_code == 200, r.text
        page = r.json()
        results.extend(page["results"])
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert [x["index"] for x in results] == [0, 1, 2, 3, 4]
    assert [x["result"]["id"] for x in results] == [s["id"] for s in STORIES]  # type: ignore[index]
    for x in results:
        assert x["ok"]
        sheet = x["result"]["cue_sheet"]  # type: ignore[index]
        assert sheet["catalogue"] == "a-only"
        assert all(len(seg["tracks"]) == 2 for seg in sheet["segments"])
    # the same story gives the same cue sheet as a synchronous search: the same tracks in
    # the same order, the same readings up to float32 rounding (the job encodes the story
    # in a batch with others, padded to another length, and BLAS sums in another order)
    r = gateway.client.post(
        "/v1/search",
        json={"text": STORIES[1]["text"], "top_k": 2, "catalogue": "a-only"},
        headers=h,
    )
    assert_same_sheet(results[1]["result"]["cue_sheet"], r.json())  # type: ignore[index]


def test_rerunning_a_finished_chunk_changes_nothing(gateway: Gateway) -> None:
    h = gateway.h("a")
    r = gateway.client.post("/v1/jobs/match", json={"stories": STORIES[:2]}, headers=h)
    job_id = r.json()["id"]
    gateway.wait("a", job_id)
    before = gateway.client.get(f"/v1/jobs/{job_id}/results", headers=h).json()
    run_match_items(job_id, [0, 1], gateway.settings)  # a redelivered task
    after = gateway.client.get(f"/v1/jobs/{job_id}/results", headers=h).json()
    assert after == before
    assert gateway.client.get(f"/v1/jobs/{job_id}", headers=h).json()["progress"]["done"] == 2


def test_jsonl_upload(gateway: Gateway) -> None:
    lines = (
        "\n".join(json.dumps(s) for s in STORIES[:3])
        + "\n\n"
        + json.dumps({"id": 7, "text": "ok then."})
    )
    r = gateway.client.post(
        "/v1/jobs/match/upload",
        files={"file": ("stories.jsonl", io.BytesIO(lines.encode()), "application/x-ndjson")},
        data={"top_k": "1", "tags": "happy,dark", "distinct": "true"},
        headers=gateway.h("a"),
    )
    assert r.status_code == 202, r.text
    job = gateway.wait("a", r.json()["id"])
    assert job["state"] == "succeeded" and job["progress"]["total"] == 4
    assert job["params"]["tags"] == ["happy", "dark"]
    assert job["params"]["distinct"] is True
    res = gateway.client.get(f"/v1/jobs/{job['id']}/results", headers=gateway.h("a")).json()
    assert res["results"][3]["result"]["id"] == "7"
    titles = {
        t["title"]
        for x in res["results"]
        for seg in x["result"]["cue_sheet"]["segments"]
        for t in seg["tracks"]
    }
    assert titles <= {"Bright", "Drone"}


def test_bad_uploads(gateway: Gateway) -> None:
    h = gateway.h("a")

    def upload(content: bytes, **data: str) -> tuple[int, dict[str, object]]:
        r = gateway.client.post(
            "/v1/jobs/match/upload",
            files={"file": ("s.jsonl", io.BytesIO(content), "application/x-ndjson")},
            data=data,
            headers=h,
        )
        return r.status_code, r.json()["error"]

    cases = [
        (b'{"id": "a", "text": "fine"}\n{"id": "b", "text": ', 422, "invalid_input"),
        (b'{"id": "a", "text": "x", "more": 1}\n', 422, "invalid_input"),
        (b'["a", "b"]\n', 422, "invalid_input"),
        (b'{"id": "a", "text": 5}\n', 422, "invalid_input"),
        (b"\xff\xfe\x00junk\n", 422, "text_decode_error"),
        (b"", 422, "invalid_input"),
        (b'{"id": "a", "text": "   "}\n', 422, "invalid_input"),
        (b"".join(b'{"id": "%d", "text": "t"}\n' % i for i in range(41)), 422, "invalid_input"),
        (b'{"id": "a", "text": "' + b"x" * 200_000 + b'"}\n', 413, "payload_too_large"),
    ]
    for content, status, code in cases:
        got_status, err = upload(content)
        assert (got_status, err["code"]) == (status, code), (content[:60], err)
    got_status, err = upload(b'{"id": "a", "text": "t"}\n', top_k="0")
    assert got_status == 422
    before = gateway.client.get("/v1/jobs", params={"limit": 1000}, headers=h).json()["jobs"]
    assert all(j["progress"]["total"] != 41 for j in before)  # nothing half-created


def test_bad_match_requests(gateway: Gateway) -> None:
    h = gateway.h("a")
    post = gateway.client.post
    cases = [
        ({"stories": []}, 422, "validation_error"),
        ({"stories": [{"id": "a"}]}, 422, "validation_error"),
        ({"stories": [{"id": "a", "text": "t", "x": 1}]}, 422, "validation_error"),
        ({"stories": [{"id": "", "text": "t"}]}, 422, "validation_error"),
        ({"stories": [{"id": "a", "text": "t"}], "top_k": 999}, 422, "invalid_input"),
        ({"stories": [{"id": "a", "text": "t"}], "catalogue": "b-only"}, 404, "not_found"),
        ({"stories": "nope"}, 422, "validation_error"),
        ({"stories": [{"id": "a", "text": "x" * 8001}]}, 422, "invalid_input"),
    ]
    for body, status, code in cases:
        r = post("/v1/jobs/match", json=body, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
    r = post(
        "/v1/jobs/match",
        content=b'{"stories": [',
        headers={**h, "content-type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")
    big = {"stories": [{"id": "a", "text": "y" * 70_000}]}
    r = post("/v1/jobs/match", json=big, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")


def test_list_get_and_cancel(gateway: Gateway) -> None:
    rt = gateway.context
    h = gateway.h("a")
    queued = rt.jobs.create("a", "match", {"top_k": 1}, items=[("q", "A quiet story.")])
    r = gateway.client.post(f"/v1/jobs/{queued.id}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    run_match_items(queued.id, [0], gateway.settings)  # a late task does nothing
    assert gateway.client.get(f"/v1/jobs/{queued.id}/results", headers=h).json()["results"] == []
    r = gateway.client.post(f"/v1/jobs/{queued.id}/cancel", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "invalid_transition")

    running = rt.jobs.create("a", "match", {"top_k": 1}, items=[("r", "A loud story.")] * 3)
    assert rt.jobs.start("a", running.id)
    r = gateway.client.post(f"/v1/jobs/{running.id}/cancel", headers=h)
    assert r.json()["state"] == "running" and r.json()["cancel_requested"]
    run_match_items(running.id, None, gateway.settings)  # the worker honours the flag
    final = gateway.client.get(f"/v1/jobs/{running.id}", headers=h).json()
    assert final["state"] == "cancelled" and final["progress"]["done"] == 0
    assert final["error"]["code"] == "cancelled"

    listed = gateway.client.get("/v1/jobs", params={"state": "cancelled"}, headers=h).json()
    ids = {j["id"] for j in listed["jobs"]}
    assert {queued.id, running.id} <= ids
    assert all(j["state"] == "cancelled" for j in listed["jobs"])
    r = gateway.client.get("/v1/jobs", params={"state": "dancing"}, headers=h)
    assert r.status_code == 422
    r = gateway.client.get("/v1/jobs", params={"cursor": "%%%"}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")
    # a well-formed cursor is a page position, whether or not a job sits there
    r = gateway.client.get("/v1/jobs", params={"cursor": "1_zzz"}, headers=h)
    assert r.status_code == 200 and r.json() == {"jobs": [], "next_cursor": None}


def test_evaluate_job_validation_and_missing_data(gateway: Gateway) -> None:
    h = gateway.h("a")
    for body in (
        {"queries": "imdb"},
        {"mappings": ["telepathy"]},
        {"model": "../../etc/passwd"},
        {"split": "train"},
        {"surprise": True},
    ):
        r = gateway.client.post("/v1/jobs/evaluate", json=body, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error"), body
    r = gateway.client.post("/v1/jobs/evaluate", json={"model": "no-such-model"}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    r = gateway.client.post("/v1/jobs/evaluate", json={"queries": "isear-test"}, headers=h)
    assert r.status_code == 202, r.text
    job = gateway.wait("a", r.json()["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == "dataset_not_found"  # this gateway has no data folder


def test_train_job_validation_and_missing_data(gateway: Gateway) -> None:
    h = gateway.h("a")
    for body in (
        {"family": "transformer"},
        {"family": "classification", "music_target": "tags"},
        {"family": "va", "version": "1 0"},
        {"family": "va", "text_sources": ["twitter"]},
        {"family": "va", "max_epochs": 0},
        {},
    ):
        r = gateway.client.post("/v1/jobs/train", json=body, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error"), body
    r = gateway.client.post(
        "/v1/jobs/train", json={"family": "metric-2branch", "version": "0.0.1"}, headers=h
    )
    assert r.status_code == 202, r.text
    job = gateway.wait("a", r.json()["id"])
    assert job["state"] == "failed" and job["error"]["code"] == "dataset_not_found"


def test_job_limits_answer_429_with_retry_after(gateway: Gateway) -> None:
    """A tenant with an unfinished training job (here one left queued in the store, as a
    busy train worker would leave it) cannot start another: 429, Retry-After, the limit in
    the details; another tenant can; once the job is finished the tenant can again."""
    lim = gateway.settings.limits
    held = gateway.context.jobs.create("b", "train", {}, total=1)
    try:
        body = {"family": "metric-2branch", "version": "0.0.2"}
        r = gateway.client.post("/v1/jobs/train", json=body, headers=gateway.h("b"))
        assert r.status_code == 429, r.text
        assert r.headers["Retry-After"] == str(lim.job_limit_retry_after_s)
        err = r.json()["error"]
        assert err["code"] == "too_many_jobs"
        assert err["details"] == {
            "kind": "train",
            "active": 1,
            "limit": lim.max_active_jobs_by_kind["train"],
        }
        r = gateway.client.post("/v1/jobs/train", json=body, headers=gateway.h("a"))
        assert r.status_code == 202, r.text
        gateway.wait("a", r.json()["id"])
    finally:
        gateway.context.jobs.cancel("b", held.id)
    body = {"family": "metric-2branch", "version": "0.0.3"}
    r = gateway.client.post("/v1/jobs/train", json=body, headers=gateway.h("b"))
    assert r.status_code == 202, r.text
    gateway.wait("b", r.json()["id"])
    spec = gateway.client.get("/openapi.json").json()
    for path, method in (("/v1/jobs/train", "post"), ("/v1/catalogues/{catalogue}/ingest", "post")):
        assert "429" in spec["paths"][path][method]["responses"], path


def test_searches_a_bulk_job_and_a_training_job_at_the_same_moment(gateway: Gateway) -> None:
    """One process, one instant: four searches, a bulk match job and a training job (which
    builds encoders of its own) answer without a server error, and the bulk job succeeds.
    (The cold-process version of the race is tests/models/test_concurrent_loading.py.)"""
    h = gateway.h("a")
    calls = [
        *[("/v1/search", {"text": "A storm broke over the sea.", "top_k": 2})] * 4,
        ("/v1/jobs/match", {"stories": STORIES, "top_k": 2}),
        ("/v1/jobs/train", {"family": "metric-2branch", "version": "0.0.9"}),
    ]
    barrier = threading.Barrier(len(calls))
    answers: list[tuple[str, int, dict[str, Any]]] = []
    lock = threading.Lock()

    def call(path: str, body: dict[str, Any]) -> None:
        barrier.wait()
        r = gateway.client.post(path, json=body, headers=h)
        with lock:
            answers.append((path, r.status_code, r.json()))

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(code for _, code, _ in answers) == [200, 200, 200, 200, 202, 202], answers
    for path, _, body in answers:
        if path == "/v1/search":
            assert body["segments"] and body["segments"][0]["tracks"], body
        elif path == "/v1/jobs/match":
            assert gateway.wait("a", body["id"])["state"] == "succeeded"
        else:  # this gateway has no data folder: the job fails cleanly, not with a crash
            job = gateway.wait("a", body["id"])
            assert job["state"] == "failed" and job["error"]["code"] == "dataset_not_found"
