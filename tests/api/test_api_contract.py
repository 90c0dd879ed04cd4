"""The OpenAPI document states what the gateway does (what schemathesis found otherwise):
the configured limits as maxima, an optional key when auth is off, every method of a path
in a 405's Allow, bounded ids and cursors with a grammar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apigw import Gateway
from fastapi.testclient import TestClient

from storycue.api.app import create_app
from storycue.config import ServiceSettings
from storycue.jobs import InProcessDispatcher


def _props(spec: dict[str, Any], component: str) -> dict[str, Any]:
    props: dict[str, Any] = spec["components"]["schemas"][component]["properties"]
    return props


def test_the_schema_states_the_configured_limits(gateway: Gateway) -> None:
    spec = gateway.client.get("/openapi.json").json()
    lim, svc = gateway.settings.limits, gateway.settings.service
    search = _props(spec, "SearchRequest")
    assert search["top_k"]["maximum"] == lim.max_top_k
    assert search["text"]["maxLength"] == lim.max_story_chars
    assert search["text"]["pattern"] == r"^[^\x00]*[^\s\x00][^\x00]*$"
    assert _props(spec, "MatchJobRequest")["stories"]["maxItems"] == svc.max_stories_per_job
    # auth is on in this gateway: a key is required, and the schema says so
    op = spec["paths"]["/v1/search"]["post"]
    assert op["security"] and {} not in op["security"]
    # music_target exists for the valence-arousal families only
    train = spec["paths"]["/v1/jobs/train"]["post"]["requestBody"]["content"]
    body = train["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in body["anyOf"]} == {
        "VATrainRequest",
        "OtherTrainRequest",
    }
    assert "music_target" in _props(spec, "VATrainRequest")
    assert "music_target" not in _props(spec, "OtherTrainRequest")


def test_with_auth_off_the_key_is_optional(gateway: Gateway, tmp_path: Path) -> None:
    settings = gateway.settings.model_copy(
        update={
            "service": gateway.settings.service.model_copy(update={"auth_required": False}),
        }
    )
    assert isinstance(settings.service, ServiceSettings)
    dispatcher = InProcessDispatcher(settings, max_workers=1)
    try:
        with TestClient(create_app(settings, dispatcher, context=gateway.context)) as client:
            spec = client.get("/openapi.json").json()
            assert {} in spec["paths"]["/v1/search"]["post"]["security"]
            assert client.get("/v1/catalogues").status_code == 200  # no key: tenant default
    finally:
        dispatcher.shutdown()


def test_405_allows_every_method_of_the_path(gateway: Gateway) -> None:
    h = gateway.h("a")
    for path, allowed in (
        ("/v1/catalogues", "GET, POST"),
        ("/v1/catalogues/a-only", "DELETE, GET"),
        ("/v1/catalogues/a-only/tracks/1", "DELETE, GET"),
    ):
        r = gateway.client.request("PATCH", path, headers=h)
        assert r.status_code == 405, path
        assert r.headers["Allow"] == allowed, path
        assert r.json()["error"]["code"] == "method_not_allowed"


def test_ids_and_cursors_out_of_their_grammar_are_invalid_not_errors(gateway: Gateway) -> None:
    h = gateway.h("a")
    get = gateway.client.get
    # past a signed 64-bit integer: rejected by the schema (this was a 500)
    r = get("/v1/catalogues/a-only/tracks/10000000000000000001", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")
    r = gateway.client.post("/v1/tracks/audio-links", json={"track_ids": [2**63]}, headers=h)
    assert r.status_code == 422
    r = gateway.client.post("/v1/tracks/audio-links", json={"track_ids": [True]}, headers=h)
    assert r.status_code == 422  # a boolean is not an id
    r = get("/v1/jobs/not a job!", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")
    # any well-formed cursor is a position: past the end, an empty page
    r = get("/v1/catalogues/a-only/tracks", params={"cursor": "9" * 19}, headers=h)
    assert r.status_code == 200 and r.json()["tracks"] == []
    r = get("/v1/catalogues/a-only/tracks", params={"cursor": "abc"}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error")
    pages: list[int] = []
    cursor = None
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = get("/v1/catalogues/a-only/tracks", params=params, headers=h).json()
        pages += [t["id"] for t in page["tracks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor.isdigit()
    assert len(pages) == 3 and pages == sorted(pages)


def test_seed_and_counts_are_integers_not_booleans(gateway: Gateway) -> None:
    h = gateway.h("a")
    for body in (
        {"family": "metric-2branch", "seed": False},
        {"family": "metric-2branch", "max_epochs": True},
        {"family": "metric-2branch", "music_target": "tags"},
    ):
        r = gateway.client.post("/v1/jobs/train", json=body, headers=h)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "validation_error"), body
    r = gateway.client.post("/v1/search", json={"text": "A storm.", "top_k": True}, headers=h)
    assert r.status_code == 422
