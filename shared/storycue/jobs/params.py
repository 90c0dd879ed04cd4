"""Validated parameters of each job kind (stored with the job, read back by workers).

The gateway validates requests against these models; workers re-validate what they read
from the database, so a job row written by hand cannot smuggle in anything else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storycue.evaluation.harness import MAPPINGS, QUERY_SETS
from storycue.training.families import FAMILIES
from storycue.training.va import TEXT_SOURCES

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$"
_VERSION = r"^[0-9A-Za-z][0-9A-Za-z.+\-]{0,39}$"
TagList = list[str]
#: Family names accepted by training jobs (``va`` is short for ``va-regression``).
TRAIN_FAMILIES: tuple[str, ...] = (*FAMILIES, "va")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchFilters(_Strict):
    """Restrictions on the tracks a story is matched to."""

    catalogue: str | None = Field(
        default=None, min_length=1, max_length=200, description="Only this catalogue."
    )
    min_duration_s: float | None = Field(default=None, ge=0, le=86_400)
    max_duration_s: float | None = Field(default=None, ge=0, le=86_400)
    tags: list[str] | None = Field(
        default=None, min_length=1, max_length=100, description="Tracks with any of these tags."
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not t or len(t) > 100 for t in v):
            raise ValueError("tags are 1 to 100 characters each")
        return v

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

    top_k: int = Field(default=5, ge=1, description="Tracks per segment (<= limits.max_top_k).")


class IngestParams(_Strict):
    """An ingest job of a catalogue's registered tracks."""

    catalogue: str = Field(min_length=1, max_length=200)
    reembed: bool = Field(
        default=False,
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
    diagnostics: bool = False


class TrainParams(_Strict):
    """A training job of one model family on the cached frozen features."""

    family: Literal[TRAIN_FAMILIES]  # type: ignore[valid-type]
    name: str | None = Field(default=None, pattern=_NAME)
    version: str = Field(default="1.0.0", pattern=_VERSION)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    max_epochs: int | None = Field(default=None, ge=1, le=10_000)
    text_sources: list[Literal[TEXT_SOURCES]] | None = Field(  # type: ignore[valid-type]
        default=None, min_length=1, max_length=len(TEXT_SOURCES)
    )
    music_target: Literal["blend", "quadrant", "tags"] | None = Field(
        default=None, description="va-regression only: the clips' training targets."
    )

    @model_validator(mode="after")
    def _va_only(self) -> TrainParams:
        if self.music_target is not None and self.family not in ("va", "va-regression"):
            raise ValueError("music_target applies to the va-regression family only")
        return self
