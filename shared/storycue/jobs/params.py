"""Validated parameters of each job kind (stored with the job, read back by workers).

The gateway validates requests against these models; workers re-validate what they read
from the database, so a job row written by hand cannot smuggle in anything else.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from storycue.data.textsets import TEXT_SOURCES
from storycue.evaluation.harness import MAPPINGS, QUERY_SETS
from storycue.training.families import FAMILIES

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$"
_VERSION = r"^[0-9A-Za-z][0-9A-Za-z.+\-]{0,39}$"


def _whole_number(value: object) -> object:
    """JSON Schema's integers: ``5`` and ``5.0``; never ``true`` or ``"5"`` (which pydantic's
    lax mode would take as 1 and 5)."""
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _number(value: object) -> object:
    """JSON numbers only: never ``true`` or ``"5"`` (pydantic's lax mode would take them)."""
    if isinstance(value, bool | str):
        raise ValueError("must be a number")
    return value


_WHOLE = BeforeValidator(_whole_number)
#: A duration in seconds of a request body (0 to one day).
Seconds = Annotated[float, Field(ge=0, le=86_400), BeforeValidator(_number)]
#: Integer fields of request bodies, their bounds inside the type (so that the OpenAPI
#: schema states them as minimum/maximum) and only JSON integers accepted.
TopK = Annotated[int, Field(ge=1, strict=True), _WHOLE]
#: Cue each track at most once in a story's cue sheet.
Distinct = Annotated[
    bool,
    Field(
        strict=True,
        description="Cue each track at most once per cue sheet: scenes take their tracks in "
        "story order, a later scene its best tracks not cued by an earlier one.",
    ),
]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1, strict=True), _WHOLE]
Epochs = Annotated[int, Field(ge=1, le=10_000, strict=True), _WHOLE]
#: A row id in a request body: up to 2^53 - 1, the largest integer every JSON client
#: holds exactly (far above any id, below PostgreSQL's signed 64-bit limit).
MAX_ROW_ID = 2**53 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID, strict=True), _WHOLE]

#: One track tag: what the OpenAPI schema states is exactly what is accepted.
Tag = Annotated[str, Field(min_length=1, max_length=100)]
TagList = list[Tag]
#: Family names accepted by training jobs (``va`` is short for ``va-regression``).
TRAIN_FAMILIES: tuple[str, ...] = (*FAMILIES, "va")


class TrackToIngest(TypedDict):
    """One track to ingest by URI (the audio worker's ``ingest_track`` task's arguments)."""

    tenant: str
    catalogue: str
    uri: str
    title: NotRequired[str | None]
    artist: NotRequired[str | None]
    tags: NotRequired[list[str] | None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchFilters(_Strict):
    """Restrictions on the tracks a story is matched to."""

    catalogue: str | None = Field(
        default=None, min_length=1, max_length=200, description="Only this catalogue."
    )
    min_duration_s: Seconds | None = None
    max_duration_s: Seconds | None = None
    tags: list[Tag] | None = Field(
        default=None, min_length=1, max_length=100, description="Tracks with any of these tags."
    )

    @model_validator(mode="after")
    def _range(self) -> SearchFilters:
        if (
            self.min_duration_s is not None
            and self.max_duration_s is not None
            and self.min_duration_s > self.max_duration_s
        ):
            raise ValueError("min_duration_s must not exceed max_duration_s")
        return self


class MatchParams(SearchFilters):
    """A bulk match job: the stories are stored as the job's items."""

    top_k: TopK = Field(default=5, description="Tracks per segment (<= limits.max_top_k).")
    distinct: Distinct = False


class IngestParams(_Strict):
    """An ingest job of a catalogue's registered tracks."""

    catalogue: str = Field(min_length=1, max_length=200)
    reembed: bool = Field(
        default=False,
        strict=True,
        description="A model switch's re-embed job: embeds under the catalogue's pending "
        "model and promotes it when every track has a vector of it.",
    )


class EvaluateParams(_Strict):
    """An evaluation job: the harness of ../shared/EVALUATION.md on one model."""

    model: str = Field(default="va-regression", pattern=_NAME)
    version: str | None = Field(default=None, pattern=_VERSION)
    queries: Literal[QUERY_SETS] = "isear-test"  # type: ignore[valid-type]
    split: Literal["test", "validation"] = Field(
        default="test", description="Part of storycue's artist-disjoint 4Q split used as gallery."
    )
    mappings: list[Literal[MAPPINGS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["manual"], min_length=1, max_length=3
    )
    diagnostics: bool = Field(default=False, strict=True)


#: Families whose training takes a clip target (``music_target``).
VA_FAMILIES: tuple[str, ...] = ("va", "va-regression")
OTHER_FAMILIES: tuple[str, ...] = tuple(f for f in TRAIN_FAMILIES if f not in VA_FAMILIES)


class _TrainCommon(_Strict):
    name: str | None = Field(default=None, pattern=_NAME)
    version: str = Field(default="1.0.0", pattern=_VERSION)
    seed: Seed = 0
    max_epochs: Epochs | None = None
    text_sources: list[Literal[TEXT_SOURCES]] | None = Field(  # type: ignore[valid-type]
        default=None, min_length=1, max_length=len(TEXT_SOURCES)
    )


class TrainParams(_TrainCommon):
    """A training job of one model family on the cached frozen features (what is stored
    with the job; requests arrive as :data:`TrainRequest`, which states per family what
    it takes)."""

    family: Literal[TRAIN_FAMILIES]  # type: ignore[valid-type]
    music_target: Literal["blend", "quadrant", "tags"] | None = Field(
        default=None, description="va-regression only: the clips' training targets."
    )

    @model_validator(mode="after")
    def _va_only(self) -> TrainParams:
        if self.music_target is not None and self.family not in VA_FAMILIES:
            raise ValueError("music_target applies to the va-regression family only")
        return self


class VATrainRequest(_TrainCommon):
    """Training a valence-arousal model (``va`` is short for ``va-regression``)."""

    family: Literal[VA_FAMILIES]  # type: ignore[valid-type]
    music_target: Literal["blend", "quadrant", "tags"] | None = Field(
        default=None, description="The clips' training targets (default: blend)."
    )


class OtherTrainRequest(_TrainCommon):
    """Training any other family (they take no clip target)."""

    family: Literal[OTHER_FAMILIES]  # type: ignore[valid-type]


#: The body of ``POST /v1/jobs/train``: one schema per kind of family (their ``family``
#: values are disjoint), so the OpenAPI document states that ``music_target`` belongs to
#: va-regression alone. A plain union (``anyOf``), not a discriminated one: schemathesis
#: 4.32 took a valid ``"family": "va"`` body for one violating the discriminated ``oneOf``.
TrainRequest = VATrainRequest | OtherTrainRequest


def train_params(request: VATrainRequest | OtherTrainRequest) -> TrainParams:
    """The stored parameters of a training request."""
    return TrainParams.model_validate(request.model_dump())
