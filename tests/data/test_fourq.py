from __future__ import annotations

from pathlib import Path

import pytest

from storycue.config import Settings
from storycue.data.fourq import QUADRANTS, load_fourq, load_gallery
from storycue.errors import DatasetFormatError, DatasetNotFoundError


def test_load_fourq_fixture_fields(fixtures_dir: Path) -> None:
    records = load_fourq(fixtures_dir / "4q")
    assert [r.song_id for r in records] == ["SYN001", "SYN002", "SYN003", "SYN004"]
    second = records[1]
    assert second.artist == "The Beta Group"
    assert second.title == "Second Song"
    assert second.quadrant == "Q2"
    assert second.moods == ("angry", "nervous", "jittery")
    assert second.genres == ("electronic", "rock")
    assert second.audio_path == fixtures_dir / "4q" / "Q2" / "SYN002.mp3"
    assert records[3].moods == ("calm", "laid-back", "mellow")


def test_load_fourq_from_settings(fixture_settings: Settings) -> None:
    assert len(load_fourq(settings=fixture_settings)) == 4


def test_load_fourq_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_fourq(tmp_path / "nope")
    with pytest.raises(DatasetNotFoundError, match="STORYCUE_DATA_DIR"):
        load_fourq(settings=Settings(data_dir=None))


def _write_4q(root: Path, rows: str) -> Path:
    folder = root / "4q"
    folder.mkdir()
    (folder / "metadata.csv").write_text(rows, encoding="utf-8")
    return folder


def test_load_fourq_missing_audio_modes(tmp_path: Path) -> None:
    folder = _write_4q(tmp_path, "Song,Artist,Quadrant,MoodsStrSplit\nX1,A,Q1,Happy\nX2,B,Q3,Sad\n")
    (folder / "Q1").mkdir()
    (folder / "Q1" / "X1.mp3").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="no audio file"):
        load_fourq(folder)
    assert [r.song_id for r in load_fourq(folder, missing_audio="skip")] == ["X1"]
    kept = load_fourq(folder, missing_audio="keep")
    assert [r.song_id for r in kept] == ["X1", "X2"]
    assert not kept[1].audio_path.exists()


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("Song,Artist,Quadrant\nX1,A,Q1\n", "missing column"),
        ("Song,Quadrant,MoodsStrSplit\nX1,Q5,Happy\n", "not one of"),
        ("Song,Quadrant,MoodsStrSplit\nX1,Q1,Happy\nX1,Q2,Sad\n", "repeats"),
        ("Song,Quadrant,MoodsStrSplit\n,Q1,Happy\n", "empty Song"),
    ],
)
def test_load_fourq_malformed(tmp_path: Path, csv_text: str, message: str) -> None:
    folder = _write_4q(tmp_path, csv_text)
    with pytest.raises(DatasetFormatError, match=message):
        load_fourq(folder, missing_audio="keep")


def test_load_gallery_finds_audio_anywhere(fixtures_dir: Path) -> None:
    gallery = fixtures_dir / "gallery"
    result = load_gallery(gallery, gallery / "meta.csv")
    by_id = {r.song_id: r for r in result.records}
    assert set(by_id) == {"track_a", "track_b", "track_c"}
    assert result.missing_audio == ["track_d"]
    # .mp3 is preferred over .flac when both exist
    assert by_id["track_b"].audio_path == gallery / "sub" / "track_b.mp3"
    assert by_id["track_b"].quadrant == "Q2"
    assert by_id["track_c"].audio_path.suffix == ".ogg"
    assert by_id["track_a"].moods == ("happy", "bright")
    assert by_id["track_a"].artist == ""


def test_load_gallery_errors(tmp_path: Path, fixtures_dir: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        load_gallery(tmp_path / "missing", fixtures_dir / "gallery" / "meta.csv")
    with pytest.raises(DatasetNotFoundError, match="missing"):
        load_gallery(tmp_path, tmp_path / "meta.csv")


@pytest.mark.data
def test_load_fourq_real(data_dir: Path) -> None:
    records = load_fourq(data_dir / "4q")
    assert len(records) == 720
    assert {q: sum(r.quadrant == q for r in records) for q in QUADRANTS} == dict.fromkeys(
        QUADRANTS, 180
    )
    assert all(r.audio_path.is_file() for r in records)
    assert all(r.moods for r in records)
    assert all(t == t.strip().lower() for r in records for t in r.moods)
