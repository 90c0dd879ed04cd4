"""``GET /v1/tracks/{id}/audio``: ranges, tenants, signed links, sources that are gone."""

from __future__ import annotations

import shutil
import time
from urllib.parse import parse_qs, urlsplit

from apigw import Gateway


def _track_ids(gw: Gateway, tenant: str, catalogue: str) -> dict[str, int]:
    r = gw.client.get(f"/v1/catalogues/{catalogue}/tracks", headers=gw.h(tenant))
    assert r.status_code == 200, r.text
    return {t["uri"].rsplit("/", 1)[-1]: t["track"]["id"] for t in r.json()["tracks"]}


def test_whole_file_and_ranges(gateway: Gateway) -> None:
    c = gateway.client
    name, tid = next(iter(_track_ids(gateway, "a", "a-only").items()))
    data = (gateway.music / name).read_bytes()
    r = c.get(f"/v1/tracks/{tid}/audio", headers=gateway.h("a"))
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "audio/wav"
    assert r.headers["accept-ranges"] == "bytes"
    assert int(r.headers["content-length"]) == len(data)
    r = c.get(f"/v1/tracks/{tid}/audio", headers={**gateway.h("a"), "Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert r.headers["content-length"] == "100"
    r = c.get(f"/v1/tracks/{tid}/audio", headers={**gateway.h("a"), "Range": "bytes=-44"})
    assert r.status_code == 206 and r.content == data[-44:]
    r = c.get(f"/v1/tracks/{tid}/audio", headers={**gateway.h("a"), "Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.json()["error"]["code"] == "range_not_satisfiable"
    assert r.headers["content-range"] == f"bytes */{len(data)}"
    r = c.head(f"/v1/tracks/{tid}/audio", headers={**gateway.h("a"), "Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == b"" and r.headers["content-length"] == "10"


def test_tenants_and_keys(gateway: Gateway) -> None:
    c = gateway.client
    a_only = _track_ids(gateway, "a", "a-only")
    b_only = _track_ids(gateway, "b", "b-only")
    mine = next(tid for n, tid in a_only.items() if n not in b_only)
    assert c.get(f"/v1/tracks/{mine}/audio").status_code == 401  # no key, auth required
    r = c.get(f"/v1/tracks/{mine}/audio", headers=gateway.h("b"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert c.get("/v1/tracks/999999/audio", headers=gateway.h("a")).status_code == 404


def test_signed_links_play_without_a_key_and_only_what_they_name(gateway: Gateway) -> None:
    c = gateway.client
    a_only = _track_ids(gateway, "a", "a-only")
    b_only = _track_ids(gateway, "b", "b-only")
    mine = next(tid for n, tid in a_only.items() if n not in b_only)
    r = c.post("/v1/tracks/audio-links", json={"track_ids": [mine]}, headers=gateway.h("a"))
    assert r.status_code == 200, r.text
    body = r.json()
    link = body["links"][str(mine)]
    assert body["expires"] > time.time()
    assert gateway.keys["a"] not in link  # the key never travels in a URL
    r = c.get(link, headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == b"RIFF"
    # The link names one tenant's one track: nothing else opens with it.
    q = parse_qs(urlsplit(link).query)
    other = next(iter(b_only.values()))
    forged = f"/v1/tracks/{other}/audio?tenant=b&expires={q['expires'][0]}&sig={q['sig'][0]}"
    r = c.get(forged)
    assert r.status_code == 401 and "signature" in r.json()["error"]["message"]
    r = c.get(f"/v1/tracks/{mine}/audio?tenant=a&expires=1&sig={q['sig'][0]}")
    assert r.status_code == 401
    r = c.get(f"/v1/tracks/{mine}/audio?tenant=a")
    assert r.status_code == 401 and "needs tenant, expires and sig" in r.json()["error"]["message"]
    # Links are asked for with a key, for your own tracks only.
    assert c.post("/v1/tracks/audio-links", json={"track_ids": [mine]}).status_code == 401
    r = c.post("/v1/tracks/audio-links", json={"track_ids": [mine]}, headers=gateway.h("b"))
    assert r.status_code == 404
    r = c.post("/v1/tracks/audio-links", json={"track_ids": []}, headers=gateway.h("a"))
    assert r.status_code == 422


def test_a_source_that_is_gone_is_a_409(gateway: Gateway) -> None:
    src = next(gateway.music.glob("*.wav"))
    copy = gateway.music / "soon-gone.wav"
    shutil.copy(src, copy)
    job = gateway.ingest("a", "gone-soon", [copy])
    assert job["state"] == "succeeded", job
    tid = _track_ids(gateway, "a", "gone-soon")["soon-gone.wav"]
    assert gateway.client.get(f"/v1/tracks/{tid}/audio", headers=gateway.h("a")).status_code == 200
    copy.unlink()
    r = gateway.client.get(f"/v1/tracks/{tid}/audio", headers=gateway.h("a"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "source_gone"
    assert "soon-gone.wav" in r.json()["error"]["message"]


def test_mood_map_of_a_catalogue(gateway: Gateway) -> None:
    c = gateway.client
    r = c.get("/v1/catalogues/a-only/mood-map", headers=gateway.h("a"))
    assert r.status_code == 200, r.text
    m = r.json()
    assert (m["total"], m["sampled"], len(m["points"])) == (3, False, 3)
    assert m["model"]["name"] == gateway.context.load_model().identity.name
    ids = set(_track_ids(gateway, "a", "a-only").values())
    assert {p["track_id"] for p in m["points"]} == ids
    assert all(0 <= p["valence"] <= 1 and 0 <= p["arousal"] <= 1 for p in m["points"])
    assert {p["title"] for p in m["points"]} >= {"Bright", "Drone"}
    r = c.get("/v1/catalogues/a-only/mood-map?limit=2", headers=gateway.h("a"))
    sample = r.json()
    assert sample["sampled"] and len(sample["points"]) == 2 and sample["total"] == 3
    first = sorted(ids)
    assert [p["track_id"] for p in sample["points"]] == [first[0], first[2]]  # every 2nd by id
    assert c.get("/v1/catalogues/a-only/mood-map", headers=gateway.h("b")).status_code == 404
