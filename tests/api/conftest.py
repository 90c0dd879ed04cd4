"""A gateway on real embedded stores (SQLite, Qdrant local) with two tenants' data.

One gateway per test module: the real text encoder (shared by the session), the shipped
model, a few synthetic clips ingested through the API into catalogues of tenants ``a``,
``b`` and ``default``. Auth is required; each tenant has an API key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apigw import Gateway, make_settings
from fastapi.testclient import TestClient

from storycue.audio.synthetic import synthesise_clips
from support.gateway import in_process_gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, text_encoder: Any) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("gateway")
    music = root / "music"
    clips = synthesise_clips(music, seconds=3.0)
    outside = root / "outside"
    outside.mkdir()
    settings = make_settings(root, music)
    with in_process_gateway(settings, text_encoder) as (rt, dispatcher, app):
        client = TestClient(app)
        keys = {t: rt.keys.create(t, "tests")[1] for t in ("a", "b", "default")}
        gw = Gateway(client, settings, rt, dispatcher, keys, music, outside)
        tags = {
            clips[0].name: {"title": "Bright", "tags": ["happy", "major"]},
            clips[1].name: {"title": "Drone", "tags": ["dark"]},
            clips[2].name: {"title": "Bursts", "tags": ["tense"]},
        }
        try:
            for tenant, catalogue, picked in (
                ("a", "a-only", clips[:3]),
                ("b", "b-only", clips[2:]),
                ("default", "mix", clips),
            ):
                job = gw.ingest(tenant, catalogue, picked, **tags)
                assert job["state"] == "succeeded", job
            yield gw
        finally:
            client.close()
