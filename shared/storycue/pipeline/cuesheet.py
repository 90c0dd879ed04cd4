"""The cue sheet: what storycue returns for a story, segment by segment."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CueTrack(BaseModel):
    rank: int
    track_id: int
    uri: str
    title: str | None = None
    artist: str | None = None
    duration_s: float | None = None
    score: float = Field(
        description="The model's match score, higher is better; compare it within one scene "
        "and one model. Inner product or cosine for most spaces (the valence-arousal "
        "closeness score of va-regression 4.3.0, quadrant agreement minus squared distance, "
        "can fall below 0), the negated distance for Euclidean ones."
    )
    distance: float | None = Field(default=None, description="Distance in the emotion space.")
    valence: float | None = None
    arousal: float | None = None
    tags: list[str] = Field(default_factory=list)


class CueEmotion(BaseModel):
    valence: float | None = None
    arousal: float | None = None
    mood_words: list[str] = Field(default_factory=list)


class CueSegment(BaseModel):
    index: int
    start: int = Field(description="Character offset of the segment in the story.")
    end: int
    tokens: int
    text: str
    emotion: CueEmotion
    tracks: list[CueTrack]


class CueSheet(BaseModel):
    """Per segment of a story: the emotion it was matched on and the top-k tracks."""

    model: dict[str, Any] = Field(description="name, version, dim, family, distance")
    catalogue: str | None = None
    story_chars: int
    distinct: bool = Field(
        default=False,
        description="Whether each track was cued at most once in this sheet (later scenes "
        "get their best tracks not cued by an earlier one).",
    )
    segments: list[CueSegment]

    def preview(self, width: int = 70) -> str:
        """A compact plain-text rendering (used by the CLI)."""
        lines: list[str] = []
        for seg in self.segments:
            snippet = " ".join(seg.text.split())
            if len(snippet) > width:
                snippet = snippet[: width - 1] + "…"
            emo = seg.emotion
            va = (
                f"valence {emo.valence:.2f}, arousal {emo.arousal:.2f}; "
                if emo.valence is not None and emo.arousal is not None
                else ""
            )
            lines.append(f"[{seg.index + 1}] {snippet}")
            lines.append(f"    emotion: {va}{', '.join(emo.mood_words)}")
            for t in seg.tracks:
                name = t.title or t.uri.rsplit("/", 1)[-1]
                who = f" — {t.artist}" if t.artist else ""
                lines.append(f"    {t.rank}. {name}{who}  (score {t.score:.3f})")
        return "\n".join(lines)
