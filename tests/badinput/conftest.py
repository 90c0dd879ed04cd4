"""Fixtures of the bad-input tests: one gateway (in-process FastAPI app) on a throw-away
PostgreSQL database and a local vector store, with a small catalogue ``good`` of synthetic
clips; a Tansu broker for the consumer path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from badgw import MAX_REQUEST, MAX_STORIES, MAX_UPLOAD, Gateway
from fastapi.testclient import TestClient

from storycue.config import (
    LimitSettings,
    QueueSettings,
    ServiceSettings,
)
from support.gateway import gateway_settings, in_process_gateway
from support.postgres import throwaway_database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (the production metadata store), dropped afterwards."""
    with throwaway_database("storycue_bad") as url:
        yield url


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, text_encoder: Any
) -> Iterator[Gateway]:
    from storycue.audio.synthetic import synthesise_clips
    from storycue.storage import MetadataStore

    with MetadataStore(pg_url) as md:
        md.migrate()
    root = tmp_path_factory.mktemp("badinput")
    music = root / "music"
    clips = synthesise_clips(music, seconds=3.0)
    settings = gateway_settings(
        root,
        music,
        database_url=pg_url,
        device="cpu",
        service=ServiceSettings(
            max_request_bytes=MAX_REQUEST,
            max_upload_bytes=MAX_UPLOAD,
            max_stories_per_job=MAX_STORIES,
        ),
        queue=QueueSettings(job_chunk_size=4),
        limits=LimitSettings(max_story_chars=2_000_000, max_top_k=20),
    )
    with in_process_gateway(settings, text_encoder) as (rt, dispatcher, app):
        client = TestClient(app, raise_server_exceptions=False)
        gw = Gateway(client, settings, rt, dispatcher, music, pg_url)
        try:
            r = client.post("/v1/catalogues", json={"name": "good"})
            assert r.status_code == 201, r.text
            tracks = [{"uri": str(p)} for p in clips]
            r = client.post("/v1/catalogues/good/tracks", json={"tracks": tracks})
            assert r.status_code == 201, r.text
            r = client.post("/v1/catalogues/good/ingest")
            assert r.status_code == 202, r.text
            assert gw.wait(r.json()["id"])["state"] == "succeeded"
            yield gw
        finally:
            client.close()
