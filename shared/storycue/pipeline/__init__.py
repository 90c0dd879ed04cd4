"""Pipelines: catalogue ingest and story matching, composed from models and storage."""
