"""Catalogue events on Kafka: versioned schemas (:mod:`.schemas`), the producer helpers
(:mod:`.kafka`) and the ingest consumer (:mod:`.consumer`). See ``docs/events.md``."""

from storycue.events.schemas import (
    SCHEMA_VERSION,
    TrackEmbeddedEvent,
    TrackEvent,
    TrackMetadata,
    decode_track_event,
    event_key,
)

__all__ = [
    "SCHEMA_VERSION",
    "TrackEmbeddedEvent",
    "TrackEvent",
    "TrackMetadata",
    "decode_track_event",
    "event_key",
]
