from __future__ import annotations

from pathlib import Path

import pytest

from storycue.config import Settings
from storycue.data.alm import ALM_LABELS, load_alm
from storycue.data.audioset_mood import load_audioset_mood
from storycue.data.fourq import load_fourq
from storycue.data.nrc_vad import VAD, VadLexicon, load_nrc_vad
from storycue.errors import DatasetFormatError, DatasetNotFoundError

# ---- NRC VAD ----------------------------------------------------------------------------


@pytest.fixture()
def lexicon(fixtures_dir: Path) -> VadLexicon:
    return load_nrc_vad(fixtures_dir / "nrc-vad" / "NRC-VAD-Lexicon.txt")


def test_lexicon_header_skipped_and_lookup(lexicon: VadLexicon) -> None:
    assert len(lexicon) == 12
    assert lexicon.lookup("Joy") == VAD(0.9, 0.7, 0.6)
    assert lexicon.lookup("word") is None
    assert lexicon.lookup("laid-back") == VAD(0.6, 0.2, 0.4)
    assert lexicon.lookup("ice-cream") == VAD(0.85, 0.5, 0.4)
    assert "calm" in lexicon


def test_lookup_phrase_slash_compound_hyphen(lexicon: VadLexicon) -> None:
    nervous = lexicon.lookup_phrase("Nervous/Jittery")
    assert nervous == pytest.approx(VAD(0.25, 0.8, 0.25))
    assert lexicon.lookup_phrase("bittersweet") == pytest.approx(VAD(0.5, 0.5, 0.45))
    assert lexicon.lookup_phrase("laid-back/mellow") == pytest.approx(VAD(0.7, 0.2, 0.4))
    # unknown words are ignored, known ones averaged
    assert lexicon.lookup_phrase("calm and unknownword") == VAD(0.7, 0.1, 0.5)
    assert lexicon.lookup_phrase("zzz/qqq") is None
    assert lexicon.lookup_phrase("") is None


def test_coverage(lexicon: VadLexicon) -> None:
    cov = lexicon.coverage(["joy", "joy", "nope", "bittersweet"])
    assert cov.total == 3
    assert cov.covered == ("joy", "bittersweet")
    assert cov.missing == ("nope",)
    assert cov.fraction == pytest.approx(2 / 3)
    assert lexicon.coverage([]).fraction == 0.0


def test_lexicon_from_settings(fixtures_dir: Path) -> None:
    settings = Settings(data_dir=fixtures_dir)
    assert len(load_nrc_vad(settings=settings)) == 12


def test_lexicon_malformed(tmp_path: Path) -> None:
    bad = tmp_path / "lex.txt"
    bad.write_text("joy\t0.9\t0.7\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="4 tab-separated"):
        VadLexicon.from_file(bad)
    bad.write_text("Word\tValence\tArousal\tDominance\njoy\tx\t0.7\t0.1\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="non-numeric"):
        VadLexicon.from_file(bad)
    bad.write_text("joy\t1.9\t0.7\t0.1\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="outside"):
        VadLexicon.from_file(bad)
    with pytest.raises(DatasetNotFoundError):
        VadLexicon.from_file(tmp_path / "absent.txt")


@pytest.mark.data
def test_lexicon_real_covers_most_4q_tags(data_dir: Path) -> None:
    lexicon = load_nrc_vad(data_dir / "nrc-vad" / "NRC-VAD-Lexicon.txt")
    assert len(lexicon) == 20007
    tags = [t for r in load_fourq(data_dir / "4q") for t in r.moods]
    assert lexicon.coverage(tags).fraction > 0.8
    assert lexicon.coverage(["anger", "joy", "sadness", "fear", "shame", "guilt"]).fraction == 1


# ---- Alm --------------------------------------------------------------------------------


def test_alm_agree_files(fixtures_dir: Path) -> None:
    root = fixtures_dir / "alm"
    rows = load_alm(root)
    assert [(r.author, r.story, r.sentence_id, r.label) for r in rows] == [
        ("Grimms", "wolf", "1", "fearful"),
        ("Grimms", "wolf", "2", "surprised"),
        ("Potter", "rabbit", "1", "happy"),
        ("Potter", "rabbit", "2", "angry-disgusted"),
        ("Potter", "rabbit", "4", "sad"),
    ]
    assert {r.label for r in rows} <= set(ALM_LABELS)
    assert {r.author for r in load_alm(root, split="test")} == {"Potter"}
    assert {r.author for r in load_alm(root, split="train")} == {"Grimms"}
    assert rows[2].text == "The invented rabbit was very happy."


def test_alm_emmood_files(fixtures_dir: Path) -> None:
    rows = load_alm(fixtures_dir / "alm", fmt="emmood")
    assert [(r.author, r.sentence_id, r.label) for r in rows] == [
        ("HCAndersen", "0", "happy"),
        ("HCAndersen", "1", "angry-disgusted"),
        ("HCAndersen", "4", "surprised"),
        ("Potter", "0", "fearful"),
    ]
    assert [r.label for r in load_alm(fixtures_dir / "alm", fmt="emmood", split="test")] == [
        "fearful"
    ]


def test_alm_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        load_alm(tmp_path / "absent")
    with pytest.raises(DatasetNotFoundError, match="no"):
        load_alm(tmp_path)
    (tmp_path / "Potter").mkdir()
    (tmp_path / "Potter" / "x.agree").write_text("1@4\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="SentID@Code@Sentence"):
        load_alm(tmp_path)


# ---- AudioSet mood ----------------------------------------------------------------------


def test_audioset_mood_manifest(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "audioset_mood"
    result = load_audioset_mood(folder)
    assert [(r.audio_path.name, r.label) for r in result.records] == [
        ("a.wav", "happy"),
        ("b.wav", "scary"),
    ]
    assert result.missing == ["clips/missing.wav"]
    assert load_audioset_mood(folder / "manifest.csv") == result


def test_audioset_mood_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        load_audioset_mood(tmp_path)
    (tmp_path / "manifest.csv").write_text("path,label\na.wav,bored\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="bored"):
        load_audioset_mood(tmp_path)
