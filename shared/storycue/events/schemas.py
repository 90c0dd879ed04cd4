"""Versioned message schemas of the catalogue event topics.

Every message is one JSON object (UTF-8) with a ``schema_version`` and a ``type``:

* ``track.added`` / ``track.updated`` / ``track.removed`` on ``Settings.kafka.topic_tracks``,
  published by platform teams (:class:`TrackEvent`);
* ``track.embedded`` on ``Settings.kafka.topic_embedded``, published by the ingest consumer
  once a track's vector and rows are written (:class:`TrackEmbeddedEvent`).

The Kafka message key is ``tenant/catalogue/track_key`` (:func:`event_key`), so every event
of one track lands on one partition and is consumed in order. A consumer accepts every
``schema_version`` up to :data:`SCHEMA_VERSION`; a newer or malformed message goes to the
dead-letter topic (see :mod:`storycue.events.deadletter`). See ``docs/events.md``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storycue.errors import InvalidInputError

#: The newest schema version this code reads and writes.
SCHEMA_VERSION = 1
#: Largest message value accepted (bytes); larger ones are dead-lettered.
MAX_MESSAGE_BYTES = 1_000_000

TrackEventType = Literal["track.added", "track.updated", "track.removed"]
TRACK_EVENT_TYPES: tuple[TrackEventType, ...] = ("track.added", "track.updated", "track.removed")

_Name = Annotated[str, Field(min_length=1, max_length=200)]


def _now() -> datetime:
    return datetime.now(UTC)


def _no_slash_or_control(value: str, what: str) -> str:
    if value != value.strip():
        raise ValueError(f"{what} must not start or end with whitespace")
    if "/" in value or any(ord(c) < 32 for c in value):
        raise ValueError(f"{what} must not contain '/' or control characters")
    return value


class TrackMetadata(BaseModel):
    """Descriptive metadata of a track (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = Field(default=None, max_length=1000)
    artist: str | None = Field(default=None, max_length=1000)
    tags: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(
        default=(), max_length=200
    )


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=100)
    occurred_at: datetime = Field(default_factory=_now)
    tenant: Annotated[str, Field(min_length=1, max_length=100)]
    catalogue: _Name
    track_key: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {v} is newer than this consumer reads ({SCHEMA_VERSION})"
            )
        return v

    @field_validator("tenant", "catalogue", "track_key")
    @classmethod
    def _clean_names(cls, v: str, info: Any) -> str:
        return _no_slash_or_control(v, str(info.field_name))

    @property
    def key(self) -> str:
        """The Kafka message key: ``tenant/catalogue/track_key``."""
        return event_key(self.tenant, self.catalogue, self.track_key)

    def to_bytes(self) -> bytes:
        """The message value: compact JSON, UTF-8."""
        return self.model_dump_json().encode("utf-8")


class TrackEvent(_Envelope):
    """A change to a platform team's catalogue: a track added, updated or removed.

    ``uri`` says where the audio is (a local path under an allowed root, ``file://``,
    ``s3://`` or ``http(s)://``); it is required for ``track.added`` and ``track.updated``
    and identifies the track to remove for ``track.removed``.
    """

    type: TrackEventType
    uri: Annotated[str, Field(min_length=1, max_length=4096)]
    metadata: TrackMetadata = Field(default_factory=TrackMetadata)


class TrackEmbeddedEvent(_Envelope):
    """A track's vector and rows are written (published by the ingest consumer)."""

    type: Literal["track.embedded"] = "track.embedded"
    source_event_id: str
    uri: str
    track_id: int
    catalogue_id: int
    content_hash: str
    created: bool = Field(description="False when the catalogue already held this content.")
    model: str = Field(description="Model identity key, e.g. va-regression@1.0.0.")
    collection: str
    point_id: str
    valence: float | None = None
    arousal: float | None = None


def event_key(tenant: str, catalogue: str, track_key: str) -> str:
    """The message key of a track's events."""
    return f"{tenant}/{catalogue}/{track_key}"


def decode_track_event(value: bytes | None) -> TrackEvent:
    """Parse a message value into a :class:`TrackEvent`.

    Raises :class:`InvalidInputError` (code ``invalid_input``) saying what is wrong: empty,
    too large, not UTF-8, not JSON, not an object, unknown type or version, bad fields.
    """
    if value is None or len(value) == 0:
        raise InvalidInputError("empty message value")
    if len(value) > MAX_MESSAGE_BYTES:
        raise InvalidInputError(f"message is {len(value)} bytes, over {MAX_MESSAGE_BYTES}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"message is not UTF-8: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"message is not JSON: {exc.msg} at {exc.pos}") from exc
    except RecursionError as exc:
        raise InvalidInputError("message is JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"message must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in TRACK_EVENT_TYPES:
        raise InvalidInputError(
            f"unknown event type {kind!r}; expected one of {', '.join(TRACK_EVENT_TYPES)}"
        )
    try:
        return TrackEvent.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInputError(f"invalid {kind} event: {problems}") from exc
