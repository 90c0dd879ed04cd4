"""The text-worker service: `storycue worker --queue text` (a Celery worker of that queue)."""

from __future__ import annotations

import sys

from storycue.cli import app

if __name__ == "__main__":
    app(["worker", "--queue", "text", *sys.argv[1:]])
