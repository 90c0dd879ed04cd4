from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from storycue.config import Settings
from storycue.data.emobank import load_emobank, rescale
from storycue.data.goemotions import EKMAN_GROUPS, EKMAN_LABELS, ekman_group, load_goemotions
from storycue.data.isear import (
    ISEAR_LABELS,
    clean_isear,
    is_placeholder,
    load_isear,
    read_isear,
    split_isear,
)
from storycue.errors import DatasetFormatError, DatasetNotFoundError, InvalidInputError

# ---- ISEAR ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[ No response.]",
        "NO RESPONSE",
        "[ No reponse.]",
        "[ Same as in anger.]",
        "The same as in SHAME.",
        "Doesn't apply.",
        "Not applicable to myself.",
        "Blank.",
        "[ Never experienced.]",
        "[ I have never felt this emotion.]",
        "[ Do not remember any incident.]",
        "Can't think of any.",
        "As for disgust.",
        "   ",
    ],
)
def test_is_placeholder_true(text: str) -> None:
    assert is_placeholder(text)


@pytest.mark.parametrize(
    "text",
    [
        "When my grandfather died.",
        "Nothing could stop me from laughing when my sister fell into the pool at her wedding.",
        "I cannot remember exactly such a situation. But I know that once I went to a very "
        "dirty lavatory and that disgusted me.",
        "The same as for SHAME and DISGUST. I was asked to resign my sorority which I did "
        "because I was ashamed of what had happened there.",
    ],
)
def test_is_placeholder_false(text: str) -> None:
    assert not is_placeholder(text)


def test_clean_isear_fixture(fixtures_dir: Path) -> None:
    raw = read_isear(fixtures_dir / "isear")
    assert len(raw) == 12
    cleaning = clean_isear(raw)
    assert [r.id for r in cleaning.placeholders] == ["0000005", "0000006", "0000007", "0000012"]
    assert [r.id for r in cleaning.duplicates] == ["0000008"]
    assert sorted(r.id for r in cleaning.conflicting) == ["0000009", "0000010"]
    assert [r.id for r in cleaning.records] == [
        "0000001",
        "0000002",
        "0000003",
        "0000004",
        "0000011",
    ]
    assert cleaning.records[2].text == "When someone, in this synthetic story, took my bike."


def test_load_isear_parts_cover_clean_set(fixture_settings: Settings) -> None:
    parts = [load_isear(p, settings=fixture_settings) for p in ("train", "validation", "test")]
    everything = load_isear("all", settings=fixture_settings)
    assert sorted(r.id for part in parts for r in part) == [r.id for r in everything]
    with pytest.raises(InvalidInputError):
        load_isear("holdout", settings=fixture_settings)  # type: ignore[arg-type]


def test_read_isear_rejects_unknown_emotion(tmp_path: Path) -> None:
    (tmp_path / "isear.csv").write_text("id,emotion,text\n1,boredom,Text.\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="boredom"):
        read_isear(tmp_path)
    (tmp_path / "isear.csv").write_text("id,text\n1,Text.\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="missing column"):
        read_isear(tmp_path)


def test_read_isear_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"isear\.csv"):
        read_isear(tmp_path)


@pytest.mark.data
def test_isear_real(data_dir: Path) -> None:
    raw = read_isear(data_dir / "isear")
    assert len(raw) == 7666
    cleaning = clean_isear(raw)
    assert 7300 < len(cleaning.records) < 7510
    texts = [r.text.casefold() for r in cleaning.records]
    assert len(set(texts)) == len(texts)
    assert not any("no response" in t for t in texts if len(t) < 30)
    split = split_isear(cleaning.records)
    assert split.fingerprint == split_isear(cleaning.records).fingerprint
    n = len(cleaning.records)
    assert abs(len(split.test) / n - 0.15) < 0.01
    for part in (split.train, split.validation, split.test):
        share = Counter(r.emotion for r in part)
        assert set(share) == set(ISEAR_LABELS)
        assert max(share.values()) - min(share.values()) <= 0.05 * len(part)
    assert {r.id for r in split.test}.isdisjoint(r.id for r in split.train)
    assert [r.id for r in load_isear("test", data_dir / "isear")] == [r.id for r in split.test]


# ---- GoEmotions -------------------------------------------------------------------------


def test_ekman_group() -> None:
    assert ekman_group(["joy", "love"]) == "joy"
    assert ekman_group(["annoyance"]) == "anger"
    assert ekman_group(["joy", "fear"]) is None
    assert ekman_group(["joy", "neutral"]) is None
    assert ekman_group(["neutral"]) is None
    assert ekman_group([]) is None
    with pytest.raises(InvalidInputError):
        ekman_group(["boredom"])
    assert sum(len(v) for v in EKMAN_GROUPS.values()) == 27


def test_load_goemotions_fixture(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "goemotions"
    rows = load_goemotions("test", folder)
    assert [(r.comment_id, r.ekman) for r in rows] == [
        ("c001", "joy"),
        ("c002", "anger"),
        ("c006", "surprise"),
    ]
    assert rows[1].labels == ("annoyance", "anger")
    assert len(load_goemotions("test", folder, ekman_only=False)) == 6
    assert load_goemotions("train", folder)[0].ekman == "sadness"
    assert load_goemotions("validation", folder)[0].ekman == "fear"


def test_load_goemotions_bad_ids(tmp_path: Path, fixtures_dir: Path) -> None:
    (tmp_path / "labels.txt").write_text(
        (fixtures_dir / "goemotions" / "labels.txt").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "test.tsv").write_text("text\t99\tc1\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="bad label ids"):
        load_goemotions("test", tmp_path)
    (tmp_path / "test.tsv").write_text("only two\tfields\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="3 tab-separated"):
        load_goemotions("test", tmp_path)


@pytest.mark.data
def test_goemotions_real(data_dir: Path) -> None:
    rows = load_goemotions("test", data_dir / "goemotions")
    counts = Counter(r.ekman for r in rows)
    assert set(counts) == set(EKMAN_LABELS)
    assert 3000 < len(rows) < 5427
    assert counts.most_common(1)[0][0] == "joy"


# ---- EmoBank ----------------------------------------------------------------------------


def test_load_emobank_fixture(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "emobank"
    rows = load_emobank("all", folder)
    assert [r.id for r in rows] == ["syn_1", "syn_2", "syn_3"]
    assert rows[0].genre == "fiction"
    assert rows[2].genre is None
    assert [r.id for r in load_emobank("test", folder)] == ["syn_2"]
    assert [r.id for r in load_emobank("validation", folder)] == ["syn_3"]
    assert [r.id for r in load_emobank("all", folder, genre="blog")] == ["syn_2"]
    assert rows[1].vad01() == pytest.approx((1.0, 0.0, 0.6))


def test_rescale() -> None:
    assert rescale(1.0) == 0.0
    assert rescale(5.0) == 1.0
    assert rescale(3.0) == 0.5


def test_load_emobank_malformed(tmp_path: Path) -> None:
    (tmp_path / "emobank.csv").write_text("id,split,V,A,D,text\nx,train,9,3,3,t\n", "utf-8")
    with pytest.raises(DatasetFormatError, match=r"outside \[1, 5\]"):
        load_emobank("all", tmp_path)


@pytest.mark.data
def test_emobank_real(data_dir: Path) -> None:
    rows = load_emobank("all", data_dir / "emobank")
    assert len(rows) == 10062
    assert Counter(r.split for r in rows) == {"train": 8062, "dev": 1000, "test": 1000}
    assert sum(r.genre == "fiction" for r in rows) == 2753
