"""Plain immutable records returned by :class:`~storycue.storage.metadata.MetadataStore`.

They are detached from any database session, safe to share across threads and to
serialise. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from storycue.errors import InvalidInputError
from storycue.identity import ModelIdentity

Distance = Literal["cosine", "euclid", "dot"]
#: Distances a vector collection may use.
DISTANCES: tuple[Distance, ...] = ("cosine", "euclid", "dot")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def normalize_sha256(value: str, what: str = "content_hash") -> str:
    """Lower-case ``value`` and check it is 64 hex digits, else :class:`InvalidInputError`."""
    v = value.strip().lower()
    if not _SHA256.fullmatch(v):
        raise InvalidInputError(
            f"{what} must be a sha256 hex digest (64 hex digits), got {value!r}",
            detail={"field": what},
        )
    return v


@dataclass(frozen=True, slots=True)
class Catalogue:
    """A named collection of tracks owned by a tenant."""

    id: int
    tenant: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TrackCreate:
    """What is needed to register one audio file; validated on construction.

    ``content_hash`` is the sha256 of the file's bytes: a catalogue holds each content
    once, so re-ingesting the same file (even under another URI) is a no-op. ``tags`` are
    stored as a de-duplicated tuple.
    """

    catalogue_id: int
    uri: str
    content_hash: str
    duration_s: float
    sample_rate: int
    channels: int
    title: str | None = None
    artist: str | None = None
    tags: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.uri:
            raise InvalidInputError("track uri must not be empty", detail={"field": "uri"})
        object.__setattr__(self, "content_hash", normalize_sha256(self.content_hash))
        if not math.isfinite(self.duration_s) or self.duration_s < 0:
            raise InvalidInputError(
                f"duration_s must be a finite number >= 0, got {self.duration_s!r}",
                detail={"field": "duration_s"},
            )
        if self.sample_rate <= 0:
            raise InvalidInputError(
                f"sample_rate must be > 0, got {self.sample_rate}",
                detail={"field": "sample_rate"},
            )
        if self.channels <= 0:
            raise InvalidInputError(
                f"channels must be > 0, got {self.channels}", detail={"field": "channels"}
            )
        if isinstance(self.tags, str):
            raise InvalidInputError("tags must be a sequence of strings, not one string")
        tags = tuple(str(t) for t in self.tags)
        if any(not t for t in tags):
            raise InvalidInputError("tags must be non-empty strings", detail={"field": "tags"})
        # De-duplicate while keeping the caller's order.
        object.__setattr__(self, "tags", tuple(dict.fromkeys(tags)))


@dataclass(frozen=True, slots=True)
class Track:
    """One audio file of a catalogue."""

    id: int
    catalogue_id: int
    uri: str
    title: str | None
    artist: str | None
    duration_s: float
    sample_rate: int
    channels: int
    content_hash: str
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A registered emotion model (its vectors live in one collection)."""

    id: int
    name: str
    version: str
    dim: int
    family: str
    distance: Distance
    checkpoint_sha256: str | None
    metadata: Mapping[str, Any]
    created_at: datetime

    @property
    def identity(self) -> ModelIdentity:
        """The :class:`ModelIdentity` of this model."""
        return ModelIdentity(name=self.name, version=self.version, dim=self.dim)


@dataclass(frozen=True, slots=True)
class EmbeddingRecord:
    """Provenance of one track's vector under one model."""

    id: int
    track_id: int
    model_id: int
    collection: str
    point_id: str
    backbone_name: str | None
    backbone_version: str | None
    text_encoder: str | None
    audio_encoder: str | None
    valence: float | None
    arousal: float | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IngestFailure:
    """A file that could not be ingested, and why."""

    id: int
    catalogue_id: int
    uri: str
    content_hash: str | None
    error_code: str
    message: str
    created_at: datetime
