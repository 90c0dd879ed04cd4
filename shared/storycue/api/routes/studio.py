"""The studio web page (``/studio``): a story in, its cue sheet seen and heard.

Static assets shipped inside the package (``storycue/api/static/studio``), served by the
gateway itself, so ``storycue serve`` needs no other process and the page fetches nothing
from any other host. The page talks to the public API only (``/v1/search``,
``/v1/tracks/audio-links``, ``/v1/catalogues/.../mood-map``, ``/v1/jobs/...``);
``/studio/config.json`` tells it the limits and whether an API key is needed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from storycue import __version__
from storycue.api.deps import AppSettings
from storycue.config import Settings
from storycue.errors import NotFoundError

router = APIRouter(include_in_schema=False)

ASSETS: dict[str, str] = {
    "studio.js": "text/javascript; charset=utf-8",
    "studio.css": "text/css; charset=utf-8",
}


def static_dir() -> Path:
    """The folder of the page's files inside the installed package."""
    return Path(str(resources.files("storycue") / "api" / "static" / "studio"))


@router.get("/")
def root() -> Response:
    return RedirectResponse("/studio", status_code=307)


@router.get("/studio")
def page() -> Response:
    return FileResponse(
        static_dir() / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/studio/assets/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError(f"no studio asset {name!r}")
    return FileResponse(
        static_dir() / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"}
    )


@router.get("/studio/config.json")
def config(settings: AppSettings) -> dict[str, Any]:
    """What the page needs to know before its first call; nothing secret."""
    return {
        "version": __version__,
        "auth_required": settings.service.auth_required,
        "max_story_chars": min(settings.limits.max_story_chars, settings.service.max_request_bytes),
        "max_top_k": settings.limits.max_top_k,
        "model": _default_model(settings),
    }


def _default_model(settings: Settings) -> str:
    """``name version`` of the default model (read from its checkpoint's header), or the
    configured name when it cannot be resolved."""
    from storycue.errors import StorycueError
    from storycue.models.checkpoints import checkpoint_info, find_checkpoint

    try:
        ident = checkpoint_info(find_checkpoint(str(settings.emotion_model), settings)).identity
    except (StorycueError, OSError):
        return str(settings.emotion_model)
    return f"{ident.name} {ident.version}"
