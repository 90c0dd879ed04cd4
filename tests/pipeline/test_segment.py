"""Story segmentation: scenes fit the encoder, cover the whole text, keep their spans."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from storycue.errors import InvalidInputError
from storycue.pipeline.segment import Segment, segment_story


def words_plus_two(texts: Sequence[str]) -> list[int]:
    """A deterministic token counter: whitespace words plus two special tokens."""
    return [len(t.split()) + 2 for t in texts]


def assert_covers(text: str, segments: list[Segment]) -> None:
    """Segments are ordered, disjoint, match their spans and cover every non-blank char."""
    covered = [False] * len(text)
    last_end = 0
    for i, seg in enumerate(segments):
        assert seg.index == i
        assert seg.start >= last_end
        assert text[seg.start : seg.end] == seg.text
        assert seg.text == seg.text.strip() and seg.text
        for k in range(seg.start, seg.end):
            covered[k] = True
        last_end = seg.end
    missing = [k for k, c in enumerate(covered) if not c and not text[k].isspace()]
    assert missing == [], f"characters dropped at {missing[:10]}"


def test_short_story_is_one_segment() -> None:
    segs = segment_story("A quiet morning by the sea.", words_plus_two, 50)
    assert [s.text for s in segs] == ["A quiet morning by the sea."]
    assert segs[0].tokens == 8


def test_paragraphs_become_scenes() -> None:
    para = " ".join(["word"] * 30)
    text = f"{para}.\n\n{para}!\n\n   \n{para}?"
    segs = segment_story(text, words_plus_two, 100, min_tokens=5)
    assert len(segs) == 3
    assert_covers(text, segs)


def test_short_paragraphs_merge_with_neighbours() -> None:
    text = '"Hello," he said.\n\n"Go away."\n\n' + " ".join(["long"] * 40) + "."
    segs = segment_story(text, words_plus_two, 100, min_tokens=10)
    assert len(segs) == 1
    assert_covers(text, segs)


def test_long_paragraph_cut_at_sentence_boundaries() -> None:
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(60)]
    text = " ".join(sentences)
    segs = segment_story(text, words_plus_two, 40)
    assert len(segs) > 1
    assert all(s.tokens <= 40 for s in segs)
    for s in segs:  # every cut falls between sentences
        assert s.text.startswith("Sentence") and s.text.endswith(".")
    assert_covers(text, segs)


def test_giant_sentence_cut_between_words_and_junk_by_characters() -> None:
    text = " ".join(["endless"] * 500) + " " + "x" * 3000
    segs = segment_story(text, lambda ts: [len(t) // 10 + 2 for t in ts], 64)
    assert all(s.tokens <= 64 for s in segs)
    assert_covers(text, segs)


@pytest.mark.parametrize("bad", ["", "   ", "\n\n\t  \n"])
def test_empty_text_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        segment_story(bad, words_plus_two, 50)


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        segment_story(b"bytes", words_plus_two, 50)  # type: ignore[arg-type]


def test_real_tokenizer_limits_and_coverage(text_encoder: object) -> None:
    enc = text_encoder
    story = (
        "The storm broke over the harbour. Ships tore loose and men shouted in fear.\n\n"
        + ("She waited by the window, and the hours went by slowly. " * 80)
        + "\n\nAt dawn the bells rang out, and everyone laughed and danced in the square."
    )
    segs = segment_story(story, enc.count_tokens, enc.max_tokens)  # type: ignore[attr-defined]
    assert len(segs) >= 3
    exact = enc.count_tokens([s.text for s in segs])  # type: ignore[attr-defined]
    assert exact == [s.tokens for s in segs]
    assert max(exact) <= enc.max_tokens  # type: ignore[attr-defined]
    assert_covers(story, segs)


def test_unicode_and_odd_whitespace_survive() -> None:
    text = "Ça va? Très bien… 😀\r\n\r\n\u00a0Zürich\u2028is grey. مرحبا بالعالم."
    segs = segment_story(text, words_plus_two, 50, min_tokens=1)
    assert_covers(text, segs)
    assert re.sub(r"\s", "", "".join(s.text for s in segs)) == re.sub(r"\s", "", text)
