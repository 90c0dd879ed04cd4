"""Request and response bodies of the gateway (pydantic; documented in the OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from storycue.jobs.params import Distinct, MatchParams, SearchFilters, Tag, TopK
from storycue.storage.jobs import Job, JobKind, JobResult, JobState
from storycue.storage.records import Catalogue, Track
from storycue.storage.tenancy import TrackSource

#: Catalogue names are path segments: letters, digits, ``.``, ``_`` and ``-``.
CATALOGUE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$"
#: Story text: no NUL character, and at least one that is not whitespace.
STORY_TEXT = r"^[^\x00]*[^\s\x00][^\x00]*$"
#: Story ids: no NUL character.
STORY_ID = r"^[^\x00]+$"
#: Track URIs, as far as a pattern can state them (storycue.sources.check_uri decides):
#: an absolute path or file:/// URI (no NUL), an s3:// object (a valid bucket name and a
#: key, no query or fragment), or an http(s) URL with a host (a name or a bracketed IPv6
#: address, no credentials) and a port up to 65535. Whether a path is under an allowed
#: root, or a host resolves to a public address, is policy and DNS: 403 and 422.
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
TRACK_URI = (
    r"^(/[^\x00]*|file:///[^\x00]*"
    r"|s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[^?#\x00]+"
    rf"|https?://([A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:{_PORT})?"
    r"([/?][^#\x00]*)?)$"
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- search --------------------------------------------------------------------------------
class SearchRequest(SearchFilters):
    """A story to match, with optional filters."""

    text: str = Field(
        min_length=1,
        pattern=STORY_TEXT,
        description="The story (any length up to limits.max_story_chars; not only blanks).",
    )
    top_k: TopK = Field(default=5, description="Tracks per segment (<= limits.max_top_k).")
    distinct: Distinct = False


# ---- jobs -----------------------------------------------------------------------------------
class StoryIn(_In):
    id: str = Field(
        min_length=1, max_length=200, pattern=STORY_ID, description="Your id of the story."
    )
    text: str = Field(
        min_length=1, pattern=STORY_TEXT, description="The story text (not only blanks)."
    )


class MatchJobRequest(MatchParams):
    """A bulk match job: stories and the options every story is matched with."""

    stories: list[StoryIn] = Field(min_length=1)


class Progress(BaseModel):
    done: int
    total: int
    fraction: float


class ErrorInfo(BaseModel):
    code: str
    message: str | None = None


class ModelRef(BaseModel):
    name: str
    version: str
    dim: int | None = None


class JobOut(BaseModel):
    """A job: its state, progress and error."""

    id: str
    kind: JobKind
    state: JobState
    params: dict[str, Any]
    progress: Progress
    error: ErrorInfo | None = None
    cancel_requested: bool
    model: ModelRef | None = None
    attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    results_url: str

    @classmethod
    def of(cls, job: Job) -> JobOut:
        total = job.progress_total
        return cls(
            id=job.id,
            kind=job.kind,
            state=job.state,
            params=job.params,
            progress=Progress(
                done=job.progress_done,
                total=total,
                fraction=1.0 if total == 0 else round(job.progress_done / total, 6),
            ),
            error=None
            if job.error_code is None
            else ErrorInfo(code=job.error_code, message=job.error_message),
            cancel_requested=job.cancel_requested,
            model=None
            if job.model is None
            else ModelRef(name=job.model.name, version=job.model.version, dim=job.model.dim),
            attempts=job.attempts,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
            results_url=f"/v1/jobs/{job.id}/results",
        )


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class ResultOut(BaseModel):
    index: int = Field(description="Position of the item in the job (0-based).")
    ok: bool
    result: dict[str, Any]

    @classmethod
    def of(cls, r: JobResult) -> ResultOut:
        return cls(index=r.index, ok=r.ok, result=r.result)


class ResultPage(BaseModel):
    job_id: str
    state: JobState
    results: list[ResultOut]
    next_cursor: str | None


# ---- catalogues and tracks -----------------------------------------------------------------
class CatalogueCreate(_In):
    name: str = Field(pattern=CATALOGUE_NAME, description="Unique within your tenant.")


class CatalogueOut(BaseModel):
    name: str
    created_at: datetime
    tracks: int = Field(description="Ingested tracks.")
    sources: dict[str, int] = Field(description="Registered tracks per state.")
    model: ModelRef = Field(
        description="The active model (the default unless set): searches use it."
    )
    model_is_default: bool
    pending_model: ModelRef | None = Field(
        default=None,
        description="The model a switch in progress re-embeds the catalogue with; it "
        "becomes the active model when the re-embed job succeeds.",
    )
    reembed_job_id: str | None = Field(
        default=None, description="The re-embed job of the switch in progress."
    )


class CatalogueList(BaseModel):
    catalogues: list[CatalogueOut]


class TrackIn(_In):
    uri: str = Field(
        min_length=1,
        max_length=4096,
        pattern=TRACK_URI,
        description="An absolute path under an allowed root, file://, s3:// or http(s)://.",
    )
    title: str | None = Field(default=None, max_length=1000)
    artist: str | None = Field(default=None, max_length=1000)
    tags: list[Tag] = Field(default_factory=list, max_length=100)


class TracksCreate(_In):
    tracks: list[TrackIn] = Field(min_length=1, max_length=1000)


class IngestedTrack(BaseModel):
    id: int
    duration_s: float
    sample_rate: int
    channels: int
    content_hash: str

    @classmethod
    def of(cls, t: Track) -> IngestedTrack:
        return cls(
            id=t.id,
            duration_s=t.duration_s,
            sample_rate=t.sample_rate,
            channels=t.channels,
            content_hash=t.content_hash,
        )


class TrackOut(BaseModel):
    """A registered track: its URI, ingest state and, once ingested, the audio's facts."""

    id: int
    uri: str
    title: str | None
    artist: str | None
    tags: list[str]
    state: Literal["pending", "ingested", "failed"]
    track: IngestedTrack | None = None
    error: ErrorInfo | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: TrackSource, track: Track | None = None) -> TrackOut:
        return cls(
            id=s.id,
            uri=s.uri,
            title=s.title,
            artist=s.artist,
            tags=list(s.tags),
            state=s.state,
            track=None if track is None else IngestedTrack.of(track),
            error=None
            if s.error_code is None
            else ErrorInfo(code=s.error_code, message=s.error_message),
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class TracksCreated(BaseModel):
    tracks: list[TrackOut]
    created: int = Field(description="How many URIs were new to the catalogue.")


class TrackPage(BaseModel):
    tracks: list[TrackOut]
    next_cursor: str | None


def catalogue_out(
    cat: Catalogue,
    tracks: int,
    sources: dict[str, int],
    model: ModelRef,
    is_default: bool,
    pending_model: ModelRef | None = None,
    reembed_job_id: str | None = None,
) -> CatalogueOut:
    return CatalogueOut(
        name=cat.name,
        created_at=cat.created_at,
        tracks=tracks,
        sources=sources,
        model=model,
        model_is_default=is_default,
        pending_model=pending_model,
        reembed_job_id=reembed_job_id,
    )


# ---- models ---------------------------------------------------------------------------------
class ModelOut(BaseModel):
    name: str
    version: str
    dim: int
    family: str
    distance: str
    text_encoder: str
    audio_backbone: str
    default: bool = Field(description="The configured default model.")
    shipped: bool = Field(description="Shipped inside the package (else trained locally).")


class ModelDetail(ModelOut):
    checkpoint: dict[str, Any] = Field(description="Everything the checkpoint records.")
    registered: bool = Field(description="Vectors of it may exist (registered in the database).")
    checkpoint_sha256: str | None = None


class ModelList(BaseModel):
    models: list[ModelOut]


class SetModelRequest(_In):
    name: str = Field(min_length=1, max_length=100)
    version: str = Field(min_length=1, max_length=40)


class SetModelResponse(BaseModel):
    catalogue: CatalogueOut
    reembed_job: JobOut | None = Field(
        description="The re-embed job of the switch (``null`` when nothing needed "
        "re-embedding and the model switched at once, or the model was already active)."
    )


# ---- health ---------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


class MoodPoint(BaseModel):
    track_id: int
    title: str | None = None
    artist: str | None = None
    valence: float
    arousal: float


class MoodMap(BaseModel):
    """Tracks of a catalogue on the valence-arousal plane, read by its active model."""

    catalogue: str
    model: ModelRef
    total: int = Field(description="Tracks of the catalogue with a reading under the model.")
    sampled: bool = Field(
        description="True when ``total`` exceeds ``limit``: the points are then every k-th "
        "track by id (k = ceil(total / limit)), the same sample on every call."
    )
    points: list[MoodPoint]
