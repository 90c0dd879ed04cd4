"""storycue's story set: its shape, its checks, and how the shipped model reads it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from storycue.cli import DEMO_STORIES
from storycue.data.mappings import quadrant_of
from storycue.errors import DatasetFormatError, InvalidInputError
from storycue.evaluation.stories import (
    LOW_AROUSAL,
    QUADRANTS,
    default_story_set,
    dev_story_set,
    load_story_set,
    stories_of,
    story_set,
    story_text,
)


def test_the_builtin_set_has_thirty_cited_passages_over_every_quadrant() -> None:
    passages = load_story_set()
    assert len(passages) >= 30
    counts = Counter(p.quadrant for p in passages)
    assert set(counts) == set(QUADRANTS) and min(counts.values()) >= 6
    authors = {p.author for p in passages}
    for who in ("Edgar Allan Poe", "Hans Christian Andersen", "Charles Dickens",
                "Brothers Grimm", "Jane Austen"):  # fmt: skip
        assert who in authors
    for p in passages:
        assert p.work and p.source and p.rationale and 1800 <= p.year <= 1910, p.id
        assert quadrant_of(p.valence, p.arousal) == p.quadrant
        assert len(p.text.split()) >= 15, p.id  # a few sentences, not a phrase


def test_the_validation_part_is_apart_from_the_test_part_and_mostly_calm() -> None:
    """``stories-dev.jsonl`` is where settings for calm prose are chosen: other passages
    (no id, text or work shared with the test part), every quadrant, at least 12 calm."""
    dev, test = story_set("dev"), load_story_set(default_story_set())
    assert dev is not None and dev == load_story_set(dev_story_set()) and len(dev) >= 25
    assert not {p.id for p in dev} & {p.id for p in test}
    assert not {p.text for p in dev} & {p.text for p in test}
    assert not {p.work for p in dev} & {p.work for p in test} - {"The Adventures of Tom Sawyer"}
    assert set(Counter(p.quadrant for p in dev)) == set(QUADRANTS)
    assert sum(p.arousal <= LOW_AROUSAL for p in dev) >= 12
    for p in dev:
        assert p.work and p.source and p.rationale and 1800 <= p.year <= 1910, p.id
        assert len(p.text.split()) >= 15, p.id


def test_demo_stories_turn_from_scene_to_scene() -> None:
    stories = stories_of(load_story_set())
    for title in DEMO_STORIES:
        scenes = stories[title]
        assert len(scenes) >= 3
        assert [p.scene for p in scenes] == sorted(p.scene for p in scenes)
        assert len({p.quadrant for p in scenes}) >= 2 or title == "The Tell-Tale Heart"
        assert story_text(scenes).count("\n\n") == len(scenes) - 1


def _write(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", "utf-8")
    return path


GOOD = {"id": "a", "quadrant": "Q3", "valence": 0.2, "arousal": 0.2, "text": "It rained."}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({**GOOD, "quadrant": "Q5"}, "quadrant must be"),
        ({**GOOD, "valence": 1.5}, r"in \[0, 1\]"),
        ({**GOOD, "quadrant": "Q1"}, "disagrees"),
        ({**GOOD, "text": "  "}, "empty text"),
        ({k: v for k, v in GOOD.items() if k != "arousal"}, "missing"),
        ({**GOOD, "valence": True}, "must be a number"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_story_sets_are_refused_with_the_line(
    tmp_path: Path, row: object, message: str
) -> None:
    with pytest.raises(DatasetFormatError, match=message) as exc:
        load_story_set(_write(tmp_path, [GOOD | {"id": "z"}, row]))
    assert ":2:" in str(exc.value)


def test_duplicates_missing_files_and_empty_sets(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="duplicate"):
        load_story_set(_write(tmp_path, [GOOD, GOOD]))
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_story_set(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", "utf-8")
    with pytest.raises(InvalidInputError, match="no passage"):
        load_story_set(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text("{not json\n", "utf-8")
    with pytest.raises(DatasetFormatError, match="not JSON"):
        load_story_set(tmp_path / "bad.jsonl")


def test_the_default_set_is_package_data() -> None:
    assert default_story_set().is_file()
    assert default_story_set().parent.name == "resources"
