"""The gateway service: ``storycue serve`` (the FastAPI app of storycue.api under uvicorn).

``create_app`` picks the job dispatcher from the settings: with
``STORYCUE_QUEUE__EXECUTION=celery`` jobs go to the worker queues
(:class:`storycue.runtime.dispatcher.CeleryDispatcher`), otherwise they run in-process.
"""

from __future__ import annotations

import sys

from storycue.cli import app

if __name__ == "__main__":
    app(["serve", *sys.argv[1:]])
