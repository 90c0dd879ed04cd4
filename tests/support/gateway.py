"""An in-process gateway for the API, bad-input and studio tests: settings with an empty
data folder and one music folder allowed, and the app over a process context whose model
reads with the session's shared text encoder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from storycue.config import IngestSourceSettings, Settings
from storycue.context import ProcessContext, close_contexts, get_context
from storycue.jobs import InProcessDispatcher


def gateway_settings(root: Path, music: Path, **fields: Any) -> Settings:
    """Settings with the home under ``root``, an empty data folder (no dataset reaches the
    test) and ingest allowed from ``music``; ``fields`` add or override (``service=``,
    ``limits=``, ``database_url=``, ...)."""
    empty = root / "no-data"
    empty.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "home": root / "home",
        "data_dir": empty,
        "sources": IngestSourceSettings(allowed_roots=[music]),
    }
    return Settings(**{**base, **fields})


@contextmanager
def in_process_gateway(
    settings: Settings, text_encoder: Any
) -> Iterator[tuple[ProcessContext, InProcessDispatcher, FastAPI]]:
    """``(context, dispatcher, app)`` of a gateway with two in-process job threads; the
    dispatcher, the context and the vector stores are closed afterwards."""
    from storycue.api import create_app
    from storycue.storage.factory import close_vector_stores

    rt = get_context(settings)
    rt.load_model().use_text_encoder(text_encoder)
    dispatcher = InProcessDispatcher(settings, max_workers=2)
    try:
        yield rt, dispatcher, create_app(settings, dispatcher)
    finally:
        dispatcher.shutdown()
        close_contexts()
        close_vector_stores()
