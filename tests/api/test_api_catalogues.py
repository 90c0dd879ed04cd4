"""Catalogues, tracks registered by URI (with the source checks), ingest, deletion, models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from apigw import Gateway

from storycue.identity import ModelIdentity
from storycue.models.checkpoints import checkpoint_info, resolve_checkpoint
from storycue.storage.vectors import SearchFilter

#: The default model: the newest shipped ``va-regression``.
VA: ModelIdentity = checkpoint_info(resolve_checkpoint("va-regression")).identity


def _vectors_of(gateway: Gateway, tenant: str, catalogue: str) -> int:
    cat = gateway.context.tenancy.catalogue(tenant, catalogue)
    return gateway.context.vectors.count(VA, SearchFilter(catalogue_ids=[cat.id]))


def test_catalogue_crud(gateway: Gateway) -> None:
    h = gateway.h("a")
    c = gateway.client
    r = c.post("/v1/catalogues", json={"name": "crud"}, headers=h)
    assert r.status_code == 201 and r.json()["name"] == "crud"
    assert r.json()["model"] == {"name": "va-regression", "version": VA.version, "dim": VA.dim}
    assert r.json()["model_is_default"]
    assert c.post("/v1/catalogues", json={"name": "crud"}, headers=h).status_code == 200
    names = [x["name"] for x in c.get("/v1/catalogues", headers=h).json()["catalogues"]]
    assert names == ["a-only", "crud"]
    got = c.get("/v1/catalogues/a-only", headers=h).json()
    assert got["tracks"] == 3 and got["sources"] == {"pending": 0, "ingested": 3, "failed": 0}
    assert c.delete("/v1/catalogues/crud", headers=h).status_code == 204
    r = c.get("/v1/catalogues/crud", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    for bad in ({"name": ""}, {"name": "a/b"}, {"name": "../x"}, {"name": 5}, {}):
        r = c.post("/v1/catalogues", json=bad, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error"), bad


def test_register_ingest_list_and_delete_tracks(gateway: Gateway, tmp_path: Path) -> None:
    h = gateway.h("a")
    c = gateway.client
    clips = sorted(gateway.music.glob("*.wav"))
    junk = gateway.music / "junk.wav"
    junk.write_bytes(b"RIFF not really audio")
    job = gateway.ingest("a", "reg", [*clips[:2], junk])
    assert job["state"] == "succeeded" and job["progress"]["done"] == 3
    res = c.get(f"/v1/jobs/{job['id']}/results", headers=h).json()["results"]
    assert [x["result"]["outcome"] for x in res] == ["embedded", "embedded", "failed"]
    assert res[2]["ok"] is False and res[2]["result"]["error"]["code"] == "audio_decode_error"
    assert _vectors_of(gateway, "a", "reg") == 2

    # listing pages through the registered tracks with their state
    first = c.get("/v1/catalogues/reg/tracks", params={"limit": 2}, headers=h).json()
    assert len(first["tracks"]) == 2 and first["next_cursor"]
    rest = c.get(
        "/v1/catalogues/reg/tracks", params={"limit": 2, "cursor": first["next_cursor"]}, headers=h
    ).json()
    tracks = first["tracks"] + rest["tracks"]
    assert rest["next_cursor"] is None
    assert [t["state"] for t in tracks] == ["ingested", "ingested", "failed"]
    assert tracks[0]["track"]["duration_s"] == pytest.approx(3.0, abs=0.01)
    assert tracks[2]["error"]["code"] == "audio_decode_error"
    failed = c.get("/v1/catalogues/reg/tracks", params={"state": "failed"}, headers=h).json()
    assert [t["uri"] for t in failed["tracks"]] == [str(junk)]
    one = c.get(f"/v1/catalogues/reg/tracks/{tracks[0]['id']}", headers=h).json()
    assert one == tracks[0]

    # re-ingesting is idempotent: only the failed one is retried, nothing is duplicated
    again = c.post("/v1/catalogues/reg/ingest", headers=h)
    job2 = gateway.wait("a", again.json()["id"])
    assert job2["progress"]["total"] == 1
    assert _vectors_of(gateway, "a", "reg") == 2
    assert c.get("/v1/catalogues/reg", headers=h).json()["tracks"] == 2

    # deleting a track removes its vector
    assert c.delete(f"/v1/catalogues/reg/tracks/{tracks[0]['id']}", headers=h).status_code == 204
    assert _vectors_of(gateway, "a", "reg") == 1
    r = c.get(f"/v1/catalogues/reg/tracks/{tracks[0]['id']}", headers=h)
    assert r.status_code == 404
    # deleting the catalogue removes the rest
    cat_id = gateway.context.tenancy.catalogue("a", "reg").id
    assert c.delete("/v1/catalogues/reg", headers=h).status_code == 204
    assert gateway.context.vectors.count(VA, SearchFilter(catalogue_ids=[cat_id])) == 0


def test_uri_checks(gateway: Gateway) -> None:
    h = gateway.h("a")
    c = gateway.client
    assert c.post("/v1/catalogues", json={"name": "uris"}, headers=h).status_code == 201
    secret = gateway.outside / "secret.wav"
    secret.write_bytes(b"x")
    link = gateway.music / "escape.wav"
    if not link.exists():
        os.symlink(secret, link)
    # malformed URIs are invalid input (422); well-formed ones this deployment's policy
    # refuses (outside the allowed roots, non-public addresses) are forbidden (403)
    malformed, forbidden, off_schema = "invalid_input", "source_not_allowed", "validation_error"
    refused = {
        str(gateway.music / ".." / "outside" / "secret.wav"): forbidden,  # traversal
        str(secret): forbidden,  # outside the roots
        str(link): forbidden,  # symlink escape
        f"file://{secret}": forbidden,
        "relative/path.wav": off_schema,  # the schema's pattern already says absolute
        "http://127.0.0.1:8080/a.wav": forbidden,  # loopback
        "http://169.254.169.254/latest/meta-data": forbidden,  # link-local (cloud metadata)
        "http://10.1.2.3/a.wav": forbidden,  # private
        "http://[::1]/a.wav": forbidden,
        "http://user:pw@example.com/a.wav": off_schema,  # credentials in the URL
        "http://nonexistent.invalid/a.wav": malformed,  # does not resolve
        "ftp://example.com/a.wav": off_schema,
        "s3://Bad_Bucket/key.wav": off_schema,
        "s3://bucket": off_schema,
        "gopher://x": off_schema,
    }
    for uri, code in refused.items():
        r = c.post("/v1/catalogues/uris/tracks", json={"tracks": [{"uri": uri}]}, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (
            403 if code == forbidden else 422,
            code,
        ), (uri, r.text)
        if code != off_schema:
            assert r.json()["error"]["details"]["field"] == "uri"
    # one refused URI in a batch stores none of them
    good = str(sorted(gateway.music.glob("synthetic-*.wav"))[0])
    r = c.post(
        "/v1/catalogues/uris/tracks",
        json={"tracks": [{"uri": good}, {"uri": str(secret)}]},
        headers=h,
    )
    assert r.status_code == 403 and r.json()["error"]["details"]["index"] == 1
    assert c.get("/v1/catalogues/uris/tracks", headers=h).json()["tracks"] == []
    ok = ["s3://my-bucket/music/a.wav", f"file://{good}", good]
    r = c.post("/v1/catalogues/uris/tracks", json={"tracks": [{"uri": u} for u in ok]}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["created"] == 3
    assert [t["state"] for t in r.json()["tracks"]] == ["pending"] * 3
    again = c.post("/v1/catalogues/uris/tracks", json={"tracks": [{"uri": ok[0]}]}, headers=h)
    assert again.json()["created"] == 0  # registering a URI twice is idempotent
    bad_bodies: list[dict[str, object]] = [
        {"tracks": []},
        {"tracks": [{"uri": good, "tags": "happy"}]},
        {"tracks": [{"uri": good, "bpm": 120}]},
        {"tracks": [{"uri": ""}]},
    ]
    for bad in bad_bodies:
        r = c.post("/v1/catalogues/uris/tracks", json=bad, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error"), bad


def test_models_and_active_model(gateway: Gateway) -> None:
    h = gateway.h("a")
    c = gateway.client
    models = c.get("/v1/models", headers=h).json()["models"]
    va = next(m for m in models if m["name"] == "va-regression" and m["version"] == VA.version)
    assert va["default"] and va["shipped"] and va["dim"] == VA.dim
    detail = c.get(f"/v1/models/va-regression/{VA.version}", headers=h).json()
    assert detail["registered"] and detail["checkpoint_sha256"]
    assert detail["checkpoint"]["identity"]["name"] == "va-regression"
    r = c.get("/v1/models/va-regression/9.9.9", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = c.put(
        "/v1/catalogues/a-only/model",
        json={"name": "va-regression", "version": VA.version},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["catalogue"]["model_is_default"] is False
    assert body["reembed_job"] is None  # every track already has a vector of this model
    r = c.put("/v1/catalogues/a-only/model", json={"name": "nope", "version": "1.0.0"}, headers=h)
    assert r.status_code == 404
    r = c.put("/v1/catalogues/a-only/model", json={"name": "va-regression"}, headers=h)
    assert r.status_code == 422
