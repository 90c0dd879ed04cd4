"""The trainer service: `storycue worker --queue train` (a Celery worker of that queue)."""

from __future__ import annotations

import sys

from storycue.cli import app

if __name__ == "__main__":
    app(["worker", "--queue", "train", *sys.argv[1:]])
