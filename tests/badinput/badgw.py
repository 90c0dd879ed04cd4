"""The gateway handle and the limits of the bad-input tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from storycue.config import Settings

MAX_REQUEST = 4 * 1024 * 1024
MAX_UPLOAD = 4 * 1024 * 1024
MAX_STORIES = 50


@dataclass
class Gateway:
    client: TestClient
    settings: Settings
    context: Any
    dispatcher: Any
    music: Path
    pg_url: str

    def wait(self, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """The job once finished (a hang fails the test)."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.client.get(f"/v1/jobs/{job_id}")
            assert r.status_code == 200, r.text
            job: dict[str, Any] = r.json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['state']}: hung?"
            time.sleep(0.1)
