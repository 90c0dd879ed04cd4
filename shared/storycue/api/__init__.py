"""The HTTP gateway (FastAPI): search, jobs, catalogues, models, health and metrics."""

from storycue.api.app import create_app

__all__ = ["create_app"]
