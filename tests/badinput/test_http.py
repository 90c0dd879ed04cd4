"""Bad requests against the gateway: each gets a clear 4xx in the JSON error shape (or, for
valid-but-odd input, a normal answer), never a 500, and never takes long."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from badcorpus import GOOD_STORY, HTTP_CASES, HttpCase, bad_uris
from badgw import MAX_REQUEST, MAX_UPLOAD, Gateway

pytestmark = pytest.mark.postgres

#: No single bad request may take longer than this (a hang or a quadratic blow-up).
REQUEST_BUDGET_S = 30.0


def _error_shape(resp: Any) -> None:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def _send(gw: Gateway, case: HttpCase) -> Any:
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.body is not None:
        kwargs["content" if case.raw else "json"] = case.body
    return gw.client.request(case.method, case.path, **kwargs)


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.name for c in HTTP_CASES])
def test_bad_request_gets_a_clear_answer(gateway: Gateway, case: HttpCase) -> None:
    started = time.monotonic()
    resp = _send(gateway, case)
    elapsed = time.monotonic() - started
    assert resp.status_code < 500, (case.name, resp.status_code, resp.text[:500])
    assert resp.status_code in case.expect, (case.name, resp.status_code, resp.text[:500])
    if resp.status_code >= 400:
        _error_shape(resp)
    assert elapsed < REQUEST_BUDGET_S, f"{case.name} took {elapsed:.1f} s"


def test_oversized_bodies_are_refused(gateway: Gateway) -> None:
    c = gateway.client
    big = json.dumps({"text": "a" * (MAX_REQUEST + 10)}).encode()
    r = c.post("/v1/search", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    # No Content-Length (chunked): refused while streaming.
    def chunks() -> Any:
        yield b'{"text": "'
        for _ in range(MAX_REQUEST // 65536 + 2):
            yield b"b" * 65536
        yield b'"}'

    r = c.post("/v1/jobs/match", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:300]

    # A Content-Length that lies about a huge body is refused before reading.
    r = c.post(
        "/v1/search",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(10**12)},
    )
    assert r.status_code in (400, 413), r.text[:300]

    # Uploads have their own (larger) limit.
    line = json.dumps({"id": "x", "text": "c" * 1000}).encode() + b"\n"
    upload = line * (MAX_UPLOAD // len(line) + 2)
    r = c.post("/v1/jobs/match/upload", files={"file": ("s.jsonl", upload, "application/x-ndjson")})
    assert r.status_code == 413, r.text[:300]


def test_a_megabyte_of_combining_characters(gateway: Gateway) -> None:
    """One 'word' of 1 MB of combining marks on a base letter: matched or refused in
    bounded time, never a 500."""
    text = "a" + "\u0301\u0308\u0323" * (1024 * 1024 // 6) + " " + GOOD_STORY
    started = time.monotonic()
    r = gateway.client.post("/v1/search", json={"text": text, "top_k": 2})
    elapsed = time.monotonic() - started
    assert r.status_code in (200, 413, 422), r.text[:500]
    assert elapsed < 120, f"{elapsed:.0f} s"
    r = gateway.client.post(
        "/v1/jobs/match", json={"stories": [{"id": "zalgo", "text": text}], "top_k": 2}
    )
    assert r.status_code in (202, 413, 422), r.text[:500]
    if r.status_code == 202:
        job = gateway.wait(r.json()["id"], timeout_s=180)
        assert job["state"] == "succeeded", job


JSONL_CASES: list[tuple[str, bytes, int]] = [
    ("empty-file", b"", 422),
    ("only-blank-lines", b"\n\n  \n", 422),
    ("not-json-line", b'{"id": "a", "text": "ok"}\n{oops\n', 422),
    ("array-line", b'{"id": "a", "text": "ok"}\n[1, 2]\n', 422),
    ("extra-key", b'{"id": "a", "text": "ok", "x": 1}\n', 422),
    ("missing-text", b'{"id": "a"}\n', 422),
    ("text-not-string", b'{"id": "a", "text": 5}\n', 422),
    ("id-bool", b'{"id": true, "text": "ok"}\n', 422),
    ("non-utf8-line", b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "\xff\xfe"}\n', 422),
    ("nul-bytes", b'{"id": "a", "text": "ok"}\n\x00\x00\x00\n', 422),
    ("binary-junk", bytes(range(256)) * 8, 422),
    ("nul-escape-in-text", b'{"id": "a", "text": "x\\u0000y"}\n', 422),
    ("lone-surrogate", b'{"id": "a", "text": "x\\ud800y"}\n', 422),
    ("empty-text", b'{"id": "a", "text": "   "}\n', 422),
    ("too-many-stories", b"".join(b'{"id": "%d", "text": "ok"}\n' % i for i in range(60)), 422),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000 + b"\n", 422),
    ("bom-then-good", b'\xef\xbb\xbf{"id": "a", "text": "' + GOOD_STORY.encode() + b'"}\n', 202),
    ("crlf-lines", b'{"id": "a", "text": "ok ok"}\r\n{"id": 7, "text": "fine"}\r\n', 202),
]


@pytest.mark.parametrize(
    ("name", "content", "expect"), JSONL_CASES, ids=[n for n, _c, _e in JSONL_CASES]
)
def test_jsonl_upload_with_bad_lines(
    gateway: Gateway, name: str, content: bytes, expect: int
) -> None:
    before = _count_jobs(gateway)
    r = gateway.client.post(
        "/v1/jobs/match/upload",
        files={"file": ("stories.jsonl", content, "application/x-ndjson")},
        data={"top_k": "2", "catalogue": "good"},
    )
    assert r.status_code < 500, (name, r.status_code, r.text[:500])
    assert r.status_code == expect, (name, r.status_code, r.text[:500])
    if expect == 202:
        assert gateway.wait(r.json()["id"])["state"] == "succeeded"
    else:
        _error_shape(r)
        assert _count_jobs(gateway) == before, "a refused upload left a job behind"


@pytest.mark.parametrize(
    ("field", "value"),
    [("top_k", "lots"), ("top_k", "0"), ("min_duration_s", "-1"), ("catalogue", "x" * 300)],
)
def test_upload_form_fields(gateway: Gateway, field: str, value: str) -> None:
    r = gateway.client.post(
        "/v1/jobs/match/upload",
        files={"file": ("s.jsonl", b'{"id": "a", "text": "ok"}\n', "application/x-ndjson")},
        data={field: value},
    )
    assert r.status_code == 422, r.text[:300]
    _error_shape(r)


def test_upload_without_file(gateway: Gateway) -> None:
    r = gateway.client.post("/v1/jobs/match/upload", data={"top_k": "2"})
    assert r.status_code == 422, r.text[:300]
    r = gateway.client.post(
        "/v1/jobs/match/upload",
        content=b"--xyz\r\nnot a real multipart body",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= r.status_code < 500, r.text[:300]


def _count_jobs(gw: Gateway) -> int:
    counts = gw.context.jobs.count_by_kind_and_state()
    return int(sum(sum(v.values()) for v in counts.values()))


def test_refused_track_uris(gateway: Gateway) -> None:
    for name, uri in bad_uris(gateway.music):
        r = gateway.client.post("/v1/catalogues/good/tracks", json={"tracks": [{"uri": uri}]})
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
        _error_shape(r)
    # One bad URI in a batch: nothing of the batch is stored.
    good = sorted(gateway.music.glob("*.wav"))[0]
    before = gateway.client.get("/v1/catalogues/good").json()["sources"]
    r = gateway.client.post(
        "/v1/catalogues/good/tracks",
        json={"tracks": [{"uri": str(good), "title": "again"}, {"uri": "/etc/passwd"}]},
    )
    assert r.status_code in (403, 422), r.text[:300]
    assert gateway.client.get("/v1/catalogues/good").json()["sources"] == before
