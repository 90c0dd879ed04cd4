"""End to end on embedded defaults: ingest real and synthetic audio, match stories.

Uses the shipped default model and real stores (a SQLite file and Qdrant local mode in a
temporary folder). Bad files are recorded and skipped; re-ingest is idempotent.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from storycue.config import Settings
from storycue.errors import InvalidInputError, NotFoundError
from storycue.pipeline.engine import Engine, TrackMeta, find_audio_files
from storycue.storage.factory import close_vector_stores


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture()
def engine(settings: Settings) -> Iterator[Engine]:
    eng = Engine(settings)
    yield eng
    eng.close()
    close_vector_stores()


def tone(
    path: Path, seconds: float, sr: int = 22050, freq: float = 440.0, channels: int = 1
) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    sf.write(path, data.astype(np.float32), sr)
    return path


@pytest.fixture()
def music_dir(tmp_path: Path) -> Path:
    d = tmp_path / "music"
    (d / "sub").mkdir(parents=True)
    tone(d / "a440.wav", 5.0)
    tone(d / "sub" / "b220.flac", 4.0, freq=220.0, channels=2, sr=44100)
    tone(d / "sub" / "c880.ogg", 3.5, freq=880.0, sr=16000)
    return d


def test_ingest_then_match_returns_a_cue_sheet(engine: Engine, music_dir: Path) -> None:
    files = find_audio_files(music_dir)
    assert [f.name for f in files] == ["a440.wav", "b220.flac", "c880.ogg"]
    report = engine.ingest(
        files, catalogue="test", meta={"a440": TrackMeta(title="A", tags=("x",))}
    )
    assert (report.embedded, report.added, report.failed) == (3, 3, [])
    sheet = engine.match("She laughed and danced all night, happy at last.", top_k=2)
    assert sheet.model["name"] == engine.model.identity.name
    assert sheet.model["dim"] == engine.model.identity.dim
    seg = sheet.segments[0]
    assert len(seg.tracks) == 2
    assert seg.tracks[0].score >= seg.tracks[1].score
    assert seg.emotion.mood_words
    if engine.model.info.va_axes:
        assert seg.emotion.valence is not None and 0.0 <= seg.emotion.valence <= 1.0
    titles = {t.uri.rsplit("/", 1)[-1]: t.title for t in seg.tracks}
    assert titles.get("a440.wav", "A") == "A"


def test_reingest_is_idempotent_by_content(engine: Engine, music_dir: Path) -> None:
    files = find_audio_files(music_dir)
    engine.ingest(files, catalogue="test")
    # Same content under a new name is the same track.
    shutil.copy(music_dir / "a440.wav", music_dir / "copy-of-a440.wav")
    again = engine.ingest(find_audio_files(music_dir), catalogue="test")
    assert again.embedded == 0 and again.already_present == 4 and again.added == 0
    cat = engine.metadata.get_catalogue("test")
    assert cat is not None
    assert engine.metadata.count_tracks(cat.id) == 3
    assert engine.vectors.count(engine.model.identity) == 3


def test_bad_files_are_reported_and_never_stop_the_ingest(engine: Engine, tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    tone(d / "good.wav", 4.0)
    (d / "empty.mp3").write_bytes(b"")
    (d / "text.wav").write_text("this is not audio at all")
    (d / "junk.flac").write_bytes(np.random.default_rng(0).bytes(5000))
    good = (d / "good.wav").read_bytes()
    (d / "truncated.wav").write_bytes(good[:60])
    tone(d / "short.wav", 0.2)
    # A WAV header that claims hours of audio it does not hold.
    hdr = (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFF0)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFF00)
    )
    (d / "huge-header.wav").write_bytes(hdr + b"\0" * 1000)
    nan = np.full(16000 * 3, np.nan, dtype=np.float32)
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    report = engine.ingest(find_audio_files(d), catalogue="mixed")
    assert report.embedded == 1
    failed = {Path(u).name for u, _ in report.failed}
    assert failed == {
        "empty.mp3",
        "text.wav",
        "junk.flac",
        "truncated.wav",
        "short.wav",
        "huge-header.wav",
        "nan.wav",
    }
    assert all(reason for _, reason in report.failed)
    cat = engine.metadata.get_catalogue("mixed")
    assert cat is not None
    assert len(engine.metadata.list_failures(cat.id)) == 7


def test_long_story_is_segmented_not_truncated(engine: Engine, music_dir: Path) -> None:
    engine.ingest(find_audio_files(music_dir), catalogue="test")
    story = "\n\n".join(
        [("The wolves howled and the village trembled in terror. " * 30)]
        + [("Spring came; the children played in the warm sun and sang. " * 30)] * 3
    )
    sheet = engine.match(story, top_k=1)
    assert len(sheet.segments) >= 4
    assert sheet.segments[-1].end == len(story.rstrip())
    assert sheet.story_chars == len(story)


def test_match_errors_are_clear(engine: Engine, music_dir: Path) -> None:
    with pytest.raises(NotFoundError, match="ingest"):
        engine.match("A sad goodbye.")
    engine.ingest(find_audio_files(music_dir), catalogue="test")
    with pytest.raises(InvalidInputError, match="empty"):
        engine.match("   \n ")
    with pytest.raises(InvalidInputError, match="top_k"):
        engine.match("A sad goodbye.", top_k=0)
    with pytest.raises(NotFoundError, match="catalogue"):
        engine.match("A sad goodbye.", catalogue="nope")
    sheet = engine.match("A sad goodbye.", catalogue="test", max_duration_s=4.5)
    durations = sorted(t.duration_s or 0.0 for t in sheet.segments[0].tracks)
    assert durations == pytest.approx([3.5, 4.0], abs=0.05)  # the 5 s track is filtered out


def test_story_size_limit(settings: Settings, music_dir: Path) -> None:
    small = settings.model_copy(
        update={"limits": settings.limits.model_copy(update={"max_story_chars": 100})}
    )
    eng = Engine(small)
    try:
        with pytest.raises(InvalidInputError, match="limit"):
            eng.match("x" * 101)
    finally:
        eng.close()
        close_vector_stores()


@pytest.mark.data
def test_real_4q_clips_rank_by_emotion(engine: Engine, real_data_dir: Path) -> None:
    """Two happy (Q1) and two sad (Q3) 4Q clips: a joyful story ranks a Q1 clip first."""
    import csv

    rows = list(csv.DictReader((real_data_dir / "4q" / "metadata.csv").open()))
    pick = [r for r in rows if r["Quadrant"] == "Q1"][:2] + [
        r for r in rows if r["Quadrant"] == "Q3"
    ][:2]
    files = [real_data_dir / "4q" / r["Quadrant"] / f"{r['Song']}.mp3" for r in pick]
    report = engine.ingest(files, catalogue="4q")
    assert report.embedded == 4
    quadrant = {str(f.resolve()): r["Quadrant"] for f, r in zip(files, pick, strict=True)}
    joy = engine.match("We won! Everyone cheered, laughing and dancing with joy.", top_k=4)
    sad = engine.match("He sat alone by her grave, grieving, tired and hopeless.", top_k=4)
    assert quadrant[joy.segments[0].tracks[0].uri] == "Q1"
    assert quadrant[sad.segments[0].tracks[0].uri] == "Q3"
