"""Helpers of the gateway tests: the :class:`Gateway` handle and the test settings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from storycue.config import (
    LimitSettings,
    QueueSettings,
    ServiceSettings,
    Settings,
)
from storycue.context import ProcessContext
from storycue.jobs import InProcessDispatcher
from support.gateway import gateway_settings

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Gateway:
    client: TestClient
    settings: Settings
    context: ProcessContext
    dispatcher: InProcessDispatcher
    keys: dict[str, str]
    music: Path
    outside: Path

    def h(self, tenant: str) -> dict[str, str]:
        """Headers authenticating as ``tenant``."""
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    def wait(self, tenant: str, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """Poll a job until it finishes; its final JSON."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.client.get(f"/v1/jobs/{job_id}", headers=self.h(tenant))
            assert r.status_code == 200, r.text
            job: dict[str, Any] = r.json()
            if job["state"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(0.1)

    def ingest(
        self, tenant: str, catalogue: str, paths: list[Path], **extra: Any
    ) -> dict[str, Any]:
        """Create a catalogue, register ``paths`` and ingest them; the finished job."""
        h = self.h(tenant)
        r = self.client.post("/v1/catalogues", json={"name": catalogue}, headers=h)
        assert r.status_code in (200, 201), r.text
        tracks = [{"uri": str(p), **extra.get(p.name, {})} for p in paths]
        r = self.client.post(
            f"/v1/catalogues/{catalogue}/tracks", json={"tracks": tracks}, headers=h
        )
        assert r.status_code == 201, r.text
        r = self.client.post(f"/v1/catalogues/{catalogue}/ingest", headers=h)
        assert r.status_code == 202, r.text
        return self.wait(tenant, r.json()["id"])


def make_settings(home: Path, music: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "service": ServiceSettings(
            auth_required=True,
            max_request_bytes=64 * 1024,
            max_upload_bytes=128 * 1024,
            max_stories_per_job=40,
        ),
        "queue": QueueSettings(job_chunk_size=3),
        "limits": LimitSettings(max_story_chars=8000, max_top_k=20),
    }
    return gateway_settings(home, music, **{**fields, **overrides})
