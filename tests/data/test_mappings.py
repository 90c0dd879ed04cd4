from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storycue.data.alm import ALM_LABELS
from storycue.data.fourq import FourQRecord, load_fourq
from storycue.data.goemotions import EKMAN_LABELS
from storycue.data.isear import ISEAR_LABELS
from storycue.data.mappings import (
    MANUAL_MAPPING,
    QUADRANT_VA_CENTRES,
    quadrant_of,
    quadrant_tags,
    quadrants_of,
    restrict,
    va_mapping,
    word_mapping,
)
from storycue.data.nrc_vad import VAD, VadLexicon
from storycue.errors import InvalidInputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def test_manual_mapping_covers_all_query_sets() -> None:
    for label in (*ISEAR_LABELS, *EKMAN_LABELS, *ALM_LABELS):
        assert label in MANUAL_MAPPING, label
    assert MANUAL_MAPPING["anger"] == {"Q2"}
    assert MANUAL_MAPPING["surprise"] == {"Q1"}
    assert MANUAL_MAPPING["sad"] == {"Q3"}
    assert MANUAL_MAPPING["angry-disgusted"] == {"Q2"}
    assert MANUAL_MAPPING["guilt"] == {"Q2", "Q3"}
    assert not any("Q4" in v for v in MANUAL_MAPPING.values())


def test_quadrant_of() -> None:
    for q, (v, a) in QUADRANT_VA_CENTRES.items():
        assert quadrant_of(v, a) == q
    assert quadrant_of(0.5, 0.5) == "Q1"
    assert quadrant_of(0.49, 0.5) == "Q2"
    assert quadrant_of(0.49, 0.49) == "Q3"
    assert quadrant_of(0.5, 0.2) == "Q4"
    assert quadrants_of([[0.9, 0.9], [0.1, 0.1]]) == ["Q1", "Q3"]
    with pytest.raises(InvalidInputError):
        quadrants_of([0.1, 0.2])


def test_va_mapping_with_fixture_lexicon() -> None:
    lex = VadLexicon.from_file(FIXTURES / "nrc-vad" / "NRC-VAD-Lexicon.txt")
    mapping = va_mapping(["joy", "sadness", "anger", "calm"], lex)
    assert mapping == {
        "joy": {"Q1"},
        "sadness": {"Q3"},
        "anger": {"Q2"},
        "calm": {"Q4"},
    }
    with pytest.raises(InvalidInputError, match="shame"):
        va_mapping(["joy", "shame"], lex)
    assert va_mapping(["joy", "shame"], lex, strict=False) == {"joy": {"Q1"}}


def test_va_mapping_compound_label() -> None:
    lex = VadLexicon({"angry": VAD(0.1, 0.9, 0.5), "disgusted": VAD(0.2, 0.6, 0.4)})
    assert va_mapping(["angry-disgusted"], lex) == {"angry-disgusted": {"Q2"}}


def _rec(q: str, moods: tuple[str, ...]) -> FourQRecord:
    return FourQRecord(q + "".join(moods), "", "", q, moods, (), Path("x.mp3"))


def test_quadrant_tags_distinct_sorted() -> None:
    recs = [_rec("Q1", ("lively", "bright")), _rec("Q1", ("bright",)), _rec("Q3", ("gloomy",))]
    assert quadrant_tags(recs) == {"Q1": ["bright", "lively"], "Q2": [], "Q3": ["gloomy"], "Q4": []}


def test_word_mapping_nearest_centroid() -> None:
    vectors = {
        "bright": [1.0, 0.0, 0.0],
        "lively": [0.9, 0.1, 0.0],
        "fierce": [0.0, 1.0, 0.0],
        "gloomy": [0.0, 0.0, 1.0],
        "joy": [0.8, 0.2, 0.0],
        "anger": [0.1, 0.9, 0.1],
        "sadness": [0.1, 0.0, 0.7],
    }

    def embed(words: list[str]) -> np.ndarray:
        arr = np.array([vectors[w] for w in words])
        unit: np.ndarray = arr / np.linalg.norm(arr, axis=1, keepdims=True)
        return unit

    tags = {"Q1": ["bright", "lively"], "Q2": ["fierce"], "Q3": ["gloomy"], "Q4": []}
    mapping = word_mapping(["joy", "anger", "sadness"], embed, tags)
    assert mapping == {"joy": {"Q1"}, "anger": {"Q2"}, "sadness": {"Q3"}}
    assert word_mapping([], embed, tags) == {}
    with pytest.raises(InvalidInputError):
        word_mapping(["joy"], embed, {"Q1": []})


def test_restrict() -> None:
    assert restrict(MANUAL_MAPPING, ["joy", "joy", "fear"]) == {"joy": {"Q1"}, "fear": {"Q2"}}
    with pytest.raises(InvalidInputError, match="boredom"):
        restrict(MANUAL_MAPPING, ["boredom"])


@pytest.mark.data
def test_va_mapping_real_lexicon() -> None:
    from storycue.config import Settings
    from storycue.data.nrc_vad import load_nrc_vad

    settings = Settings()
    if settings.data_dir is None or not (settings.data_dir / "nrc-vad").is_dir():
        pytest.skip("real datasets not found: set STORYCUE_DATA_DIR")
    lex = load_nrc_vad(settings=settings)
    mapping = va_mapping([*ISEAR_LABELS, *EKMAN_LABELS], lex)
    assert mapping["joy"] == {"Q1"}
    assert mapping["sadness"] == {"Q3"}
    assert mapping["anger"] == {"Q2"}
    records = load_fourq(settings.data_dir / "4q")
    assert sum(len(v) for v in quadrant_tags(records).values()) >= 216
