"""The ingest-consumer service: ``storycue consume`` (one member of the Kafka group)."""

from __future__ import annotations

from storycue.cli import app

if __name__ == "__main__":
    app(["consume"])
