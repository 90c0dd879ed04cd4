"""Corrupt and adversarial audio through track registration and an ingest job: every file
gets an item-level failure (its reason in the job's results, the source and the
``ingest_failures`` table) or, where the audio is usable, a finite embedding; the job
finishes in bounded time and nothing else is disturbed."""

from __future__ import annotations

import math
import time
from typing import Any

import psycopg
import pytest
from badcorpus import adversarial_audio
from badgw import Gateway

pytestmark = pytest.mark.postgres

#: Files that may still hold usable audio: storing them (with a finite vector) is
#: acceptable. (An MP3 cut after its first frames is a shorter valid stream.)
MAY_INGEST = {"nan-samples.wav", "inf-samples.wav", "truncated.mp3"}


def _all_pages(gw: Gateway, url: str, key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        r = gw.client.get(url, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(page[key])
        cursor = page["next_cursor"]
        if not cursor:
            return out


@pytest.mark.timeout(600)
def test_adversarial_audio_through_the_ingest_route(gateway: Gateway) -> None:
    c = gateway.client
    files = adversarial_audio(gateway.music / "adversarial")
    good_before = c.get("/v1/catalogues/good").json()["tracks"]
    r = c.post("/v1/catalogues", json={"name": "bad-audio"})
    assert r.status_code == 201, r.text
    r = c.post(
        "/v1/catalogues/bad-audio/tracks",
        json={"tracks": [{"uri": str(p), "title": name} for name, p in files.items()]},
    )
    assert r.status_code == 201, r.text
    assert r.json()["created"] == len(files)

    started = time.monotonic()
    r = c.post("/v1/catalogues/bad-audio/ingest")
    assert r.status_code == 202, r.text
    job = gateway.wait(r.json()["id"], timeout_s=300)
    elapsed = time.monotonic() - started
    assert job["state"] == "succeeded", job
    assert job["progress"]["done"] == len(files)

    results = _all_pages(gateway, f"/v1/jobs/{job['id']}/results", "results")
    assert len(results) == len(files)
    by_uri = {res["result"]["uri"]: res for res in results}
    outcomes: dict[str, str] = {}
    for name, path in files.items():
        res = by_uri[str(path)]
        if res["ok"]:
            assert name in MAY_INGEST, (name, res)
            outcomes[name] = "ingested"
        else:
            err = res["result"]["error"]
            assert err["code"] and err["message"], (name, res)
            assert err["code"] != "internal_error", (name, err)
            outcomes[name] = err["code"]

    sources = {
        s["uri"]: s for s in _all_pages(gateway, "/v1/catalogues/bad-audio/tracks", "tracks")
    }
    failed = {n for n, o in outcomes.items() if o != "ingested"}
    for name in failed:
        src = sources[str(files[name])]
        assert src["state"] == "failed" and src["error"]["code"] == outcomes[name], src
    with psycopg.connect(gateway.pg_url, autocommit=True) as conn:
        recorded = {row[0] for row in conn.execute("SELECT uri FROM ingest_failures").fetchall()}
        vectors = conn.execute(
            "SELECT e.valence, e.arousal FROM embeddings e JOIN tracks t ON t.id = e.track_id "
            "JOIN catalogues c ON c.id = t.catalogue_id WHERE c.name = 'bad-audio'"
        ).fetchall()
    missing = [n for n in failed if not any(str(files[n]) in p or n in p for p in recorded)]
    assert not missing, f"failures not in ingest_failures: {missing}"
    for valence, arousal in vectors:
        assert math.isfinite(valence) and math.isfinite(arousal)
    assert len(vectors) == len(files) - len(failed)
    # The rest of the system is undisturbed, and search still works.
    assert c.get("/v1/catalogues/good").json()["tracks"] == good_before
    r = c.post("/v1/search", json={"text": "a calm sea at dawn", "catalogue": "good"})
    assert r.status_code == 200, r.text
    assert elapsed < 300
    print(f"\nadversarial audio outcomes ({elapsed:.1f} s): {outcomes}")  # noqa: T201


def test_registering_a_missing_file_fails_at_ingest_not_500(gateway: Gateway) -> None:
    c = gateway.client
    c.post("/v1/catalogues", json={"name": "missing"})
    gone = gateway.music / "does-not-exist.wav"
    r = c.post("/v1/catalogues/missing/tracks", json={"tracks": [{"uri": str(gone)}]})
    assert r.status_code in (201, 404, 422), r.text
    if r.status_code == 201:
        r = c.post("/v1/catalogues/missing/ingest")
        assert r.status_code == 202, r.text
        job = gateway.wait(r.json()["id"])
        results = _all_pages(gateway, f"/v1/jobs/{job['id']}/results", "results")
        assert [res["ok"] for res in results] == [False]
        assert results[0]["result"]["error"]["code"] != "internal_error"
