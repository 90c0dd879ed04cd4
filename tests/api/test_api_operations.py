"""Health, readiness (503 + Retry-After while the database is down), metrics, OpenAPI,
embedded mode without auth, and request-level bad input."""

from __future__ import annotations

from pathlib import Path

from apigw import Gateway, make_settings
from fastapi.testclient import TestClient

from storycue.api import create_app
from storycue.config import ServiceSettings
from storycue.jobs import InProcessDispatcher


def test_openapi_documents_every_route(gateway: Gateway) -> None:
    doc = gateway.client.get("/openapi.json").json()
    expected = {
        ("post", "/v1/search"),
        ("post", "/v1/jobs/match"),
        ("post", "/v1/jobs/match/upload"),
        ("get", "/v1/jobs"),
        ("get", "/v1/jobs/{job_id}"),
        ("get", "/v1/jobs/{job_id}/results"),
        ("post", "/v1/jobs/{job_id}/cancel"),
        ("post", "/v1/jobs/evaluate"),
        ("post", "/v1/jobs/train"),
        ("post", "/v1/catalogues"),
        ("get", "/v1/catalogues"),
        ("get", "/v1/catalogues/{catalogue}"),
        ("delete", "/v1/catalogues/{catalogue}"),
        ("post", "/v1/catalogues/{catalogue}/tracks"),
        ("get", "/v1/catalogues/{catalogue}/tracks"),
        ("get", "/v1/catalogues/{catalogue}/tracks/{track_id}"),
        ("delete", "/v1/catalogues/{catalogue}/tracks/{track_id}"),
        ("post", "/v1/catalogues/{catalogue}/ingest"),
        ("put", "/v1/catalogues/{catalogue}/model"),
        ("get", "/v1/catalogues/{catalogue}/mood-map"),
        ("post", "/v1/tracks/audio-links"),
        ("get", "/v1/tracks/{track_id}/audio"),
        ("head", "/v1/tracks/{track_id}/audio"),
        ("get", "/v1/models"),
        ("get", "/v1/models/{name}/{version}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == expected
    assert "ErrorResponse" in doc["components"]["schemas"]
    schemes = doc["components"]["securitySchemes"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schemes)


def test_metrics_count_requests_by_route(gateway: Gateway) -> None:
    gateway.client.get("/v1/jobs/does-not-exist", headers=gateway.h("a"))
    text = gateway.client.get("/metrics").text
    assert 'route="/v1/jobs/{job_id}"' in text
    assert "storycue_http_requests_total" in text
    assert 'storycue_jobs{kind="match",state="succeeded"}' in text


def test_request_level_bad_input(gateway: Gateway) -> None:
    c = gateway.client
    h = {**gateway.h("a"), "content-type": "application/json"}
    cases = [
        (b"{not json", 422, "validation_error"),
        (b"\x00\xff\xfe binary junk", 422, "validation_error"),
        (b"[]", 422, "validation_error"),
        (b'{"text": null}', 422, "validation_error"),
        (b'{"text": "ok", "top_k": "five"}', 422, "validation_error"),
        (b'{"text": "ok", "top_k": 1.5}', 422, "validation_error"),
        (b'{"text": "' + b"z" * 70_000 + b'"}', 413, "payload_too_large"),
    ]
    for body, status, code in cases:
        r = c.post("/v1/search", content=body, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), body[:40]
    r = c.put("/v1/search", json={}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")
    r = c.get("/v1/nothing-here", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")


def test_database_down_answers_503_and_readyz_says_so(gateway: Gateway, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        gateway.music,
        database_url="postgresql://postgres@127.0.0.1:1/nothing",
        service=ServiceSettings(auth_required=False),
    )
    dispatcher = InProcessDispatcher(settings, max_workers=1)
    with TestClient(create_app(settings, dispatcher), raise_server_exceptions=False) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["error"]["details"]["checks"]["database"].startswith("down")
        for method, path, body in (
            ("GET", "/v1/catalogues", None),
            ("POST", "/v1/catalogues", {"name": "x"}),
            ("GET", "/v1/jobs", None),
            ("POST", "/v1/search", {"text": "A story."}),
        ):
            r = c.request(method, path, json=body)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"]["code"] == "database_unavailable"
            assert r.headers["retry-after"] == "5"
        assert c.get("/metrics").status_code == 200
    dispatcher.shutdown()


def test_embedded_mode_needs_no_key(gateway: Gateway, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, gateway.music, service=ServiceSettings(auth_required=False))
    dispatcher = InProcessDispatcher(settings, max_workers=1)
    with TestClient(create_app(settings, dispatcher)) as c:
        r = c.post("/v1/catalogues", json={"name": "mine"})
        assert r.status_code == 201
        assert [x["name"] for x in c.get("/v1/catalogues").json()["catalogues"]] == ["mine"]
        # a key that is sent must still be valid
        bad = c.get("/v1/catalogues", headers={"X-API-Key": "sc_" + "q" * 32})
        assert bad.status_code == 401
    dispatcher.shutdown()
