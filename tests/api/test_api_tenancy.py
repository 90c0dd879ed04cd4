"""Authentication, and tenant isolation: a key of tenant B gets 404 for every resource of
tenant A, exactly as for a missing one."""

from __future__ import annotations

from apigw import Gateway


def test_keys_are_required_and_checked(gateway: Gateway) -> None:
    c = gateway.client
    r = c.get("/v1/catalogues")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"
    assert r.headers["www-authenticate"] == "Bearer"
    for headers in (
        {"Authorization": "Bearer sc_" + "x" * 32},
        {"Authorization": "Bearer nonsense"},
        {"X-API-Key": "sc_" + "y" * 32},
        {"Authorization": "Basic dXNlcjpwdw=="},
    ):
        r = c.get("/v1/catalogues", headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthenticated"), headers
    assert c.get("/v1/catalogues", headers={"X-API-Key": gateway.keys["a"]}).status_code == 200
    record, key = gateway.context.keys.create("a", "temporary")
    assert c.get("/v1/catalogues", headers={"X-API-Key": key}).status_code == 200
    assert gateway.context.keys.revoke("a", record.id)
    assert c.get("/v1/catalogues", headers={"X-API-Key": key}).status_code == 401
    # keys are stored hashed: the key itself is nowhere in the table
    from sqlalchemy import text

    with gateway.context.metadata.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM api_keys"))]
    assert rows and not any(key in str(row) for row in rows)
    # operations routes need no key
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert c.get(path).status_code == 200, path


def test_a_key_of_b_gets_404_for_every_resource_of_a(gateway: Gateway) -> None:
    c = gateway.client
    ha, hb = gateway.h("a"), gateway.h("b")
    # A's resources: a catalogue, a registered track, a job with results
    track_id = c.get("/v1/catalogues/a-only/tracks", headers=ha).json()["tracks"][0]["id"]
    r = c.post(
        "/v1/jobs/match",
        json={"stories": [{"id": "x", "text": "A bright morning."}], "catalogue": "a-only"},
        headers=ha,
    )
    job_id = r.json()["id"]
    assert gateway.wait("a", job_id)["state"] == "succeeded"
    b_track = c.get("/v1/catalogues/b-only/tracks", headers=hb).json()["tracks"][0]["id"]

    attempts = [
        ("GET", "/v1/catalogues/a-only", None),
        ("DELETE", "/v1/catalogues/a-only", None),
        ("GET", "/v1/catalogues/a-only/tracks", None),
        ("POST", "/v1/catalogues/a-only/tracks", {"tracks": [{"uri": "s3://bucket-x/k.wav"}]}),
        ("GET", f"/v1/catalogues/a-only/tracks/{track_id}", None),
        ("DELETE", f"/v1/catalogues/a-only/tracks/{track_id}", None),
        ("GET", f"/v1/catalogues/b-only/tracks/{track_id}", None),  # A's track via B's catalogue
        ("DELETE", f"/v1/catalogues/b-only/tracks/{track_id}", None),
        ("POST", "/v1/catalogues/a-only/ingest", None),
        ("PUT", "/v1/catalogues/a-only/model", {"name": "va-regression", "version": "1.0.0"}),
        ("GET", f"/v1/jobs/{job_id}", None),
        ("GET", f"/v1/jobs/{job_id}/results", None),
        ("POST", f"/v1/jobs/{job_id}/cancel", None),
        ("POST", "/v1/search", {"text": "A bright morning.", "catalogue": "a-only"}),
        ("POST", "/v1/jobs/match", {"stories": [{"id": "x", "text": "t"}], "catalogue": "a-only"}),
    ]
    for method, path, body in attempts:
        r = c.request(method, path, json=body, headers=hb)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found", (method, path)
        missing = path.replace("a-only", "zz-missing").replace(job_id, "0" * 36)
        if missing != path:
            r2 = c.request(method, missing, json=body, headers=hb)
            assert r2.status_code == 404 and r2.json()["error"]["code"] == "not_found"
    # listings never show A's things to B
    assert [x["name"] for x in c.get("/v1/catalogues", headers=hb).json()["catalogues"]] == [
        "b-only"
    ]
    assert job_id not in {j["id"] for j in c.get("/v1/jobs", headers=hb).json()["jobs"]}
    # and A's data is intact
    assert c.get("/v1/catalogues/a-only", headers=ha).json()["tracks"] == 3
    assert c.get(f"/v1/catalogues/b-only/tracks/{b_track}", headers=hb).status_code == 200
    assert c.get(f"/v1/catalogues/b-only/tracks/{b_track}", headers=ha).status_code == 404
