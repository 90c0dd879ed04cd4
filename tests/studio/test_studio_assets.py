"""The studio page's assets: shipped in the package, small, and fetching nothing from
another host (offline deployments)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from storycue.api import create_app
from storycue.api.routes.studio import ASSETS, static_dir
from storycue.config import ServiceSettings, Settings


def test_assets_are_small_and_local() -> None:
    files = [static_dir() / "index.html", *(static_dir() / name for name in ASSETS)]
    assert sum(f.stat().st_size for f in files) < 300_000
    for f in files:
        text = f.read_text("utf-8")
        # The only absolute URL allowed is the SVG namespace name (not fetched).
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (f.name, urls)


def test_the_gateway_serves_the_page_and_its_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path / "home", service=ServiceSettings(auth_required=True))
    with TestClient(create_app(settings)) as client:
        r = client.get("/", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/studio"
        r = client.get("/studio")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "storycue studio" in r.text
        for name, ctype in ASSETS.items():
            r = client.get(f"/studio/assets/{name}")
            assert r.status_code == 200 and r.headers["content-type"] == ctype
        assert client.get("/studio/assets/..%2Fstudio.py").status_code == 404
        assert client.get("/studio/assets/nothing.js").status_code == 404
        cfg = client.get("/studio/config.json").json()
        assert cfg["auth_required"] is True and cfg["max_top_k"] == settings.limits.max_top_k
        assert cfg["model"].startswith("va-regression ")  # name and version of the default
    off = Settings(home=tmp_path / "home2", service=ServiceSettings(studio=False))
    with TestClient(create_app(off)) as client:
        assert client.get("/studio").status_code == 404
