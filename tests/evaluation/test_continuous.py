"""The continuous-emotion evaluation: EmoBank sets, scenes, correlations, the probe, and
arousal in matching."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from storycue.data.emobank import (
    EmoBankRecord,
    emobank_document,
    load_emobank,
    passage_windows,
    rescale,
    scene_windows,
)
from storycue.errors import InvalidInputError
from storycue.evaluation.continuous import (
    RatedTexts,
    correlations,
    emobank_sets,
    read_passages,
)


def _rec(doc: str, start: int, v: float, a: float, genre: str = "fiction") -> EmoBankRecord:
    return EmoBankRecord(
        id=f"{doc}_{start}_{start + 10}",
        split="test",
        valence=v,
        arousal=a,
        dominance=3.0,
        text=f"{doc} sentence at {start}.",
        genre=genre,
    )


def test_emobank_ids_carry_document_and_offsets() -> None:
    assert emobank_document("The_Black_Willow_10020_10171") == ("The_Black_Willow", 10020, 10171)
    assert emobank_document("a_1_2") == ("a", 1, 2)
    with pytest.raises(InvalidInputError):
        emobank_document("no-offsets-here")


def test_scene_windows_are_consecutive_non_overlapping_and_per_document() -> None:
    # Out of order on purpose: windows follow the character offsets, not the file order.
    recs = [_rec("B", s, 3, 3) for s in (50, 10, 30, 40, 20)]
    recs += [_rec("A", s, 2, 2) for s in (5, 1, 3, 2, 4, 6, 7)]
    windows = scene_windows(recs, 3)
    starts = [[emobank_document(r.id)[1] for r in w] for w in windows]
    docs = [{emobank_document(r.id)[0] for r in w} for w in windows]
    assert starts == [[1, 2, 3], [4, 5, 6], [10, 20, 30]]  # A's tail (7) and B's (40, 50) dropped
    assert all(len(d) == 1 for d in docs)
    assert scene_windows(recs, 1)[0][0].id.startswith("A_1_")
    with pytest.raises(InvalidInputError):
        scene_windows(recs, 0)


def test_passage_windows_join_sentences_against_their_mean_rating() -> None:
    recs = [_rec("A", s, v, a) for s, v, a in ((3, 5, 1), (1, 1, 5), (2, 3, 3), (4, 2, 2))]
    recs.append(EmoBankRecord("SemEval_7", "test", 5.0, 5.0, 3.0, "A headline.", None))
    out = passage_windows(recs, (2, 3))
    # Size 2: sentences (1, 2) and (3, 4); size 3: (1, 2, 3). The id without offsets is out.
    assert [t for t, _, _ in out] == [
        "A sentence at 1. A sentence at 2.",
        "A sentence at 3. A sentence at 4.",
        "A sentence at 1. A sentence at 2. A sentence at 3.",
    ]
    np.testing.assert_allclose([(v, a) for _, v, a in out], [
        (rescale(2.0), rescale(4.0)), (rescale(3.5), rescale(1.5)), (rescale(3.0), rescale(3.0)),
    ])  # fmt: skip


def test_training_sets_take_emobank_passages_as_rated_prose(tmp_path: Path) -> None:
    from storycue.config import Settings
    from storycue.data.textsets import check_text_sources, text_training_set

    folder = tmp_path / "emobank"
    folder.mkdir()
    lines = ["id,split,V,A,D,text"]
    lines += [f"doc_{i}_{i + 1},train,{1 + i},{5 - i},3,Sentence {i}." for i in range(4)]
    (folder / "emobank.csv").write_text("\n".join(lines) + "\n", "utf-8")
    settings = Settings(data_dir=tmp_path, nrc_vad_path=None)
    ts = text_training_set("train", None, ["emobank", "emobank-passages"], settings, 2.0)  # type: ignore[arg-type]
    assert ts.source.count("emobank") == 4
    passages = [t for t, src in zip(ts.texts, ts.source, strict=True) if src == "emobank-passages"]
    assert passages[0] == "Sentence 0. Sentence 1." and len(passages) == 2 + 1 + 1  # sizes 2,3,4
    assert ts.weights.tolist() == [2.0] * len(ts.texts)
    assert check_text_sources(["isear", "", "emobank-passages"]) == ["isear", "emobank-passages"]
    with pytest.raises(InvalidInputError, match="emobank-passages"):
        check_text_sources(["emobank-scenes"])


def test_goemotions_labels_place_a_comment_at_its_own_labels(tmp_path: Path) -> None:
    """``goemotions-labels``: a comment sits at the mean NRC position of its own labels
    (relief is calm, amusement is not), not at its Ekman group's word ("joy")."""
    from storycue.config import Settings
    from storycue.data.nrc_vad import VadLexicon
    from storycue.data.textsets import fine_label_va, text_training_set

    folder = tmp_path / "goemotions"
    folder.mkdir()
    (folder / "labels.txt").write_text("relief\namusement\nneutral\njoy\n", "utf-8")
    rows = ["What a relief.\t0\tc1", "Ha, so funny\t1,3\tc2", "Fine.\t2\tc3"]
    (folder / "train.tsv").write_text("\n".join(rows) + "\n", "utf-8")
    lex_path = tmp_path / "nrc.txt"
    lex_path.write_text(
        "Word\tValence\tArousal\tDominance\nrelief\t0.84\t0.28\t0.5\n"
        "amusement\t0.93\t0.84\t0.5\njoy\t0.98\t0.82\t0.5\nneutral\t0.47\t0.18\t0.5\n",
        "utf-8",
    )
    lex = VadLexicon.from_file(lex_path)
    settings = Settings(data_dir=tmp_path)
    fine = text_training_set("train", lex, ["goemotions-labels"], settings)
    ekman = text_training_set("train", lex, ["goemotions"], settings)
    assert fine.texts == ekman.texts == ["What a relief.", "Ha, so funny"]  # neutral: no group
    assert fine.labels == ekman.labels == ["joy", "joy"]
    assert fine.source == ["goemotions-labels"] * 2
    np.testing.assert_allclose(fine.targets, [[0.84, 0.28], [0.955, 0.83]], atol=1e-6)
    np.testing.assert_allclose(ekman.targets, [[0.98, 0.82], [0.98, 0.82]], atol=1e-6)
    with pytest.raises(InvalidInputError, match="at least one label"):
        fine_label_va(lex, ())


def test_correlations_are_exact_and_bootstrap_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random((60, 2))
    pred = np.stack([2 * truth[:, 0] + 1, -truth[:, 1]], axis=1)
    c = correlations(pred, truth, bootstrap=200)
    assert c["n"] == 60
    assert c["valence_pearson"] == pytest.approx(1.0)
    assert c["valence_spearman"] == pytest.approx(1.0)
    assert c["arousal_pearson"] == pytest.approx(-1.0)
    lo, hi = c["arousal_spearman_ci95"]
    assert lo == pytest.approx(-1.0) and hi == pytest.approx(-1.0)
    noisy = truth + rng.normal(0, 0.3, truth.shape)
    a, b = correlations(noisy, truth, bootstrap=200), correlations(noisy, truth, bootstrap=200)
    assert a == b
    assert a["valence_pearson_ci95"][0] < a["valence_pearson"] < a["valence_pearson_ci95"][1]


class _WordCountReader:
    """Reads valence as the share of the word 'good' and arousal as the share of '!'
    characters: a transparent reader for checking how passages are cut and averaged."""

    name = "word counts"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def read_segments(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        out = []
        for t in texts:
            words = t.split()
            out.append((words.count("good") / len(words), t.count("!") / max(len(t), 1)))
        return np.asarray(out)


def _count_words(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) + 2 for t in texts]


def test_long_passages_are_segmented_and_token_weighted_not_truncated() -> None:
    reader = _WordCountReader()
    short = "good good bad"
    para_a = " ".join(["good"] * 12) + "."
    para_b = " ".join(["bad"] * 36) + "."
    long = para_a + "\n\n" + para_b  # 50 "tokens": over a limit of 40
    out = read_passages(reader, [short, long], _count_words, 40)
    assert out[0, 0] == pytest.approx(2 / 3)
    assert para_a in reader.seen and para_b in reader.seen and long not in reader.seen
    # Token-weighted: paragraph A (14 tokens) reads 11/12 ("good." is not "good"), B (38) 0.
    assert out[1, 0] == pytest.approx(14 * (11 / 12) / 52)


def test_rated_texts_check_their_shape() -> None:
    with pytest.raises(InvalidInputError):
        RatedTexts("x", ["a", "b"], np.zeros((3, 2)))


# ---- real data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emobank_test_sets(real_data_dir: Path) -> list[RatedTexts]:
    from storycue.config import get_settings

    return emobank_sets(get_settings(), "test")


def test_emobank_sets_have_the_documented_shape(emobank_test_sets: list[RatedTexts]) -> None:
    from storycue.config import get_settings

    by_name = {s.name: s for s in emobank_test_sets}
    assert list(by_name) == ["sentences", "fiction", "fiction-scenes-3", "fiction-scenes-6"]
    rows = load_emobank("test", settings=get_settings())
    fiction = [r for r in rows if r.genre == "fiction"]
    assert len(by_name["sentences"]) == len(rows)
    assert len(by_name["fiction"]) == len(fiction) > 200
    # Non-overlapping windows: at most a third / a sixth of the fiction sentences.
    assert 0.8 * len(fiction) / 3 < len(by_name["fiction-scenes-3"]) <= len(fiction) / 3
    assert 0.6 * len(fiction) / 6 < len(by_name["fiction-scenes-6"]) <= len(fiction) / 6
    # A scene's rating is the mean of its sentences' ratings.
    w = scene_windows(fiction, 6)[0]
    assert by_name["fiction-scenes-6"].texts[0] == " ".join(r.text for r in w)
    np.testing.assert_allclose(
        by_name["fiction-scenes-6"].va[0], np.mean([r.vad01()[:2] for r in w], axis=0), rtol=1e-6
    )


def test_shipped_model_reads_prose_better_than_the_frozen_probe(real_data_dir: Path) -> None:
    """The product's core, as a regression test: the shipped default beats the ridge probe
    on the frozen encoder for valence and arousal, overall and on fiction scenes."""
    from storycue.config import get_settings
    from storycue.evaluation.continuous import continuous_report
    from storycue.models.emotion import load_emotion_model

    settings = get_settings()
    model = load_emotion_model(settings.emotion_model)
    rep = continuous_report(model, settings, part="test")
    mine, probe = rep["rows"]["model"]["sets"], rep["rows"]["probe"]["sets"]
    assert rep["probe"]["alpha"] in (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
    for name in ("sentences", "fiction", "fiction-scenes-6"):
        assert mine[name]["valence_pearson"] > probe[name]["valence_pearson"], name
    assert mine["sentences"]["arousal_pearson"] > probe["sentences"]["arousal_pearson"]
    # Regression guards a little under 4.2.0's .699 / .480 (deterministic: the same
    # checkpoint, features and data give the same numbers). 4.1.0 read .708 / .499: 4.2.0
    # was chosen on validation for calm prose (rule 2026-12-05b) and gave up .01 / .02 of
    # these; the story-grade issue's bars, .72 / .50, are not met.
    assert mine["sentences"]["valence_pearson"] >= 0.69
    assert mine["sentences"]["arousal_pearson"] >= 0.47


def test_nrc_words_place_each_word_at_its_own_position_in_a_fixed_part(tmp_path: Path) -> None:
    """``nrc-words``: every lexicon word is a text at its own valence and arousal, in exactly
    one part of the split, and the part depends on the word alone (not on the lexicon)."""
    from storycue.config import Settings
    from storycue.data.nrc_vad import VadLexicon
    from storycue.data.textsets import check_text_sources, text_training_set, word_part

    words = {f"w{i}": (i / 40, 1 - i / 40) for i in range(40)} | {"calm": (0.875, 0.1)}
    lex_path = tmp_path / "nrc.txt"
    lex_path.write_text(
        "Word\tValence\tArousal\tDominance\n"
        + "".join(f"{w}\t{v}\t{a}\t0.5\n" for w, (v, a) in words.items()),
        "utf-8",
    )
    lex = VadLexicon.from_file(lex_path)
    settings = Settings(data_dir=tmp_path)
    parts = {p: text_training_set(p, lex, ["nrc-words"], settings)
             for p in ("train", "validation", "test")}  # fmt: skip
    seen = [t for ts in parts.values() for t in ts.texts]
    assert sorted(seen) == sorted(words) and len(set(seen)) == len(seen)
    assert len(parts["train"].texts) > len(parts["validation"].texts) + len(parts["test"].texts)
    for part, ts in parts.items():
        assert ts.source == ["nrc-words"] * len(ts.texts) and set(ts.labels) <= {""}
        for text, target in zip(ts.texts, ts.targets, strict=True):
            assert word_part(text) == part
            np.testing.assert_allclose(target, words[text], atol=1e-6)
    # the part is a function of the word alone: a lexicon of that one word puts it there too
    alone = tmp_path / "one.txt"
    alone.write_text("calm\t0.875\t0.1\t0.3\n", "utf-8")
    one = VadLexicon.from_file(alone)
    assert text_training_set(word_part("calm"), one, ["nrc-words"], settings).texts == ["calm"]
    assert check_text_sources(["isear", "nrc-words"]) == ["isear", "nrc-words"]
