"""Every emotion-space family trains on a tiny synthetic feature bank, saves and reloads.

The bank has label-dependent structure: four text labels and four quadrants whose text,
music and word-space prototypes line up (label k <-> quadrant k), three mood tags per
quadrant, two labelled text sources and one VA-only source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from storycue.data.fourq import QUADRANTS
from storycue.data.mappings import QUADRANT_VA_CENTRES
from storycue.errors import InvalidInputError
from storycue.models.checkpoints import CheckpointInfo, EmotionHeads
from storycue.models.emotion import EmotionModel
from storycue.training.families import FAMILIES, FamilyConfig, FeatureBank, get_family

LABELS = ("joy", "anger", "sadness", "serenity")  # label k <-> quadrant k
TAGS = {
    "Q1": ("happy", "cheerful", "exciting"),
    "Q2": ("angry", "hostile", "tense"),
    "Q3": ("gloomy", "sad", "bleak"),
    "Q4": ("calm", "tender", "peaceful"),
}
MAPPING = {lab: frozenset({q}) for lab, q in zip(LABELS, QUADRANTS, strict=True)}
EXPECTED_DISTANCE = {
    "classification": "dot",
    "multihead-classification": "cosine",
    "va-regression": "dot",  # soft-quadrant scoring
    "word-regression": "cosine",
    "metric-2branch": "cosine",
    "metric-3branch": "cosine",
}


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def make_bank(seed: int = 7) -> FeatureBank:
    rng = np.random.default_rng(seed)
    d_text, d_audio, d_word = 24, 20, 12
    text_proto = rng.normal(size=(4, d_text)) * 2.0
    audio_proto = rng.normal(size=(4, d_audio)) * 2.0
    word_centre = _unit(rng.normal(size=(4, d_word)))
    tags = [t for q in QUADRANTS for t in TAGS[q]]
    words = [*LABELS, *tags, "mellow"]
    vecs = np.concatenate(
        [
            word_centre + 0.2 * rng.normal(size=(4, d_word)),
            np.repeat(word_centre, 3, axis=0) + 0.3 * rng.normal(size=(12, d_word)),
            word_centre[3:4] + 0.3 * rng.normal(size=(1, d_word)),
        ]
    )
    tf, tl, ts, tv = {}, {}, {}, {}
    mf, mq, mm = {}, {}, {}
    for part, n_text, n_clip in (("train", 160, 64), ("validation", 64, 32), ("test", 64, 32)):
        k = rng.integers(0, 4, size=n_text)
        src = np.where(rng.random(n_text) < 0.5, "isear", "goemotions")
        # the second source never uses "serenity": taxonomies differ
        k = np.where((src == "goemotions") & (k == 3), 0, k)
        labels = [LABELS[i] for i in k]
        va = np.asarray([QUADRANT_VA_CENTRES[QUADRANTS[i]] for i in k]) + 0.05 * rng.normal(
            size=(n_text, 2)
        )
        feats = text_proto[k] + rng.normal(size=(n_text, d_text))
        # a few VA-only rows (EmoBank-like): no label
        n_va = 16
        kv = rng.integers(0, 4, size=n_va)
        feats = np.concatenate([feats, text_proto[kv] + rng.normal(size=(n_va, d_text))])
        va = np.concatenate([va, np.asarray([QUADRANT_VA_CENTRES[QUADRANTS[i]] for i in kv])]).clip(
            0, 1
        )
        tf[part], tl[part] = feats, [*labels, *[""] * n_va]
        ts[part], tv[part] = [*src.tolist(), *["emobank"] * n_va], va
        q = np.arange(n_clip) % 4
        mf[part] = audio_proto[q] + rng.normal(size=(n_clip, d_audio))
        mq[part] = [QUADRANTS[i] for i in q]
        mm[part] = [tuple(rng.choice(TAGS[QUADRANTS[i]], size=2, replace=False)) for i in q]
    return FeatureBank.from_arrays(
        text_features=tf,
        text_labels=tl,
        text_sources=ts,
        text_va=tv,
        music_features=mf,
        quadrants=mq,
        moods=mm,
        words=words,
        word_vectors=_unit(vecs),
        mapping=MAPPING,
        mood_words=["mellow"],
        mood_word_features=text_proto[3:4] + rng.normal(size=(1, d_text)),
    )


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny heads train faster (and identically) on one thread, above all on a busy host."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bank() -> FeatureBank:
    return make_bank()


def fast_config(name: str) -> FamilyConfig:
    cfg = get_family(name).default_config()
    return replace(
        cfg,
        seed=3,
        text_hidden=[32, 32] if name == "multihead-classification" else [32],
        audio_hidden=[32, 32] if name == "multihead-classification" else [32],
        tag_hidden=[16],
        embed_dim=8,
        max_epochs=12 if name.startswith("metric") else 6,
        patience=12,
        batch_size=32,
        steps_per_epoch=6,
        lr=3e-3,
    )


@pytest.fixture(scope="module")
def trained(bank: FeatureBank, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("families")
    paths = {}
    for name, family in FAMILIES.items():
        heads = family.train(bank, fast_config(name))
        paths[name] = out / f"{name}.safetensors"
        heads.save(paths[name])
    return paths


def _project(heads: EmotionHeads, bank: FeatureBank, part: str) -> tuple[np.ndarray, np.ndarray]:
    model = EmotionModel(heads)
    return (
        model.project_text_features(bank.text[part].features),
        model.project_audio_features(bank.music[part].features),
    )


def test_registry_names() -> None:
    assert set(FAMILIES) == set(EXPECTED_DISTANCE)
    assert get_family("va").name == "va-regression"


@pytest.mark.parametrize("name", sorted(EXPECTED_DISTANCE))
def test_family_checkpoint_round_trip(
    name: str, bank: FeatureBank, trained: dict[str, Path]
) -> None:
    heads = EmotionHeads.load(trained[name])
    info = heads.info
    assert info.family == name
    assert info.distance == EXPECTED_DISTANCE[name]
    dim = info.identity.dim
    assert heads.text_head.space_dim == heads.audio_head.space_dim == info.head_dim
    assert info.training["embedding_dim"] == dim
    assert info.training["seed"] == 3
    assert info.training["config"]["max_epochs"] == fast_config(name).max_epochs
    assert info.training["data"]["fingerprint"] == bank.fingerprint()
    assert info.metrics == {}
    q, g = _project(heads, bank, "test")
    assert q.shape == (len(bank.text["test"]), dim)
    assert g.shape == (len(bank.music["test"]), dim)
    assert np.isfinite(q).all() and np.isfinite(g).all()
    scores = EmotionModel(heads).score(q, g)
    assert scores.shape == (len(q), len(g))
    if heads.mood_positions.size:  # stored as head outputs
        assert heads.mood_positions.shape == (len(info.mood_words), info.head_dim)


@pytest.mark.parametrize("name", ["classification", "metric-3branch", "word-regression"])
def test_family_deterministic_for_a_seed(
    name: str, bank: FeatureBank, trained: dict[str, Path]
) -> None:
    again = FAMILIES[name].train(bank, fast_config(name))
    saved = EmotionHeads.load(trained[name])
    for a, b in zip(_project(again, bank, "test"), _project(saved, bank, "test"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_classification_scores_are_zero_across_disjoint_vocabularies(
    bank: FeatureBank, trained: dict[str, Path]
) -> None:
    heads = EmotionHeads.load(trained["classification"])
    assert heads.info.vocabulary == [*sorted(LABELS), *QUADRANTS]
    q, g = _project(heads, bank, "test")
    assert set(np.unique(q)) <= {0.0, 1.0}
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    np.testing.assert_allclose(g[:, len(LABELS) :].sum(axis=1), 1.0, atol=1e-5)
    assert np.all(EmotionModel(heads).score(q, g) == 0.0)


def test_multihead_saves_taxonomy_heads(trained: dict[str, Path]) -> None:
    heads = EmotionHeads.load(trained["multihead-classification"])
    roles = set(heads.heads)
    assert {"text", "audio", "cls-isear", "cls-goemotions", "cls-4q", "cls-allmusic"} <= roles
    tax = heads.info.training["taxonomies"]
    assert tax["cls-goemotions"] == ["anger", "joy", "sadness"]
    assert heads.heads["cls-allmusic"].config.out_dim == 12


def _raw_text_va(heads: EmotionHeads, bank: FeatureBank) -> np.ndarray:
    with torch.inference_mode():
        out: np.ndarray = heads.text_head(torch.from_numpy(bank.text["test"].features)).numpy()
    return out


def test_va_regression_default_is_a_soft_quadrant_space(
    bank: FeatureBank, trained: dict[str, Path]
) -> None:
    heads = EmotionHeads.load(trained["va-regression"])
    info = heads.info
    assert info.va_axes and info.va_centre == 0.5 and info.va_quadrant_sharpness == 10.0
    assert info.identity.dim == 4 and info.head_dim == 2 and heads.text_head.space_dim == 2
    model = EmotionModel(heads)
    q, g = _project(heads, bank, "test")
    # four quadrant memberships that sum to one; va_coordinates inverts the map
    for x in (q, g):
        assert x.shape[1] == 4 and ((x >= 0) & (x <= 1)).all()
        np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-6)
    raw = _raw_text_va(heads, bank)
    np.testing.assert_allclose(model.va_coordinates(q), raw, atol=1e-4)
    reading = model.read(q[0])
    assert (reading.valence, reading.arousal) == pytest.approx(tuple(raw[0]), abs=1e-4)
    assert reading.mood_words == ["mellow"]  # the bank's one mood word
    # the score is the probability of sharing a quadrant: texts of each label score their
    # own quadrant's clips highest on this cleanly separated bank
    sim = model.score(q, g)
    labels, quads = bank.text["test"].labels, bank.music["test"].quadrants
    for lab, quad in MAPPING.items():
        rows = [i for i, x in enumerate(labels) if x == lab]
        own = sim[np.ix_(rows, [j for j, x in enumerate(quads) if x in quad])].mean()
        other = sim[np.ix_(rows, [j for j, x in enumerate(quads) if x not in quad])].mean()
        assert own > other, (lab, own, other)
    # the maps only mean something for a valence-arousal space scored by dot
    with pytest.raises(ValueError, match="va_centre"):
        CheckpointInfo.model_validate(info.model_dump() | {"distance": "euclid"})
    with pytest.raises(ValueError, match="4 dimensions"):
        CheckpointInfo.model_validate(
            info.model_dump() | {"identity": {"name": "x", "version": "1", "dim": 2}}
        )


def test_va_regression_circumplex_scoring_stores_offsets(bank: FeatureBank) -> None:
    cfg = replace(fast_config("va-regression"), va_scoring="circumplex")
    heads = FAMILIES["va-regression"].train(bank, cfg)
    info = heads.info
    assert info.distance == "dot" and info.va_centre == 0.5 and info.va_quadrant_sharpness is None
    assert info.identity.dim == 2
    model = EmotionModel(heads)
    q, _ = _project(heads, bank, "test")
    assert ((q >= -0.5) & (q <= 0.5)).all()
    np.testing.assert_allclose(model.va_coordinates(q), _raw_text_va(heads, bank), atol=1e-6)


def test_va_regression_euclid_scoring_keeps_the_points(bank: FeatureBank) -> None:
    cfg = replace(fast_config("va-regression"), va_scoring="euclid")
    heads = FAMILIES["va-regression"].train(bank, cfg)
    assert heads.info.distance == "euclid" and heads.info.va_centre is None
    q, _ = _project(heads, bank, "test")
    assert ((q >= 0) & (q <= 1)).all()
    np.testing.assert_allclose(EmotionModel(heads).va_coordinates(q), q)


def test_va_scorings_rank_a_mildly_sad_text_differently(bank: FeatureBank) -> None:
    """A mildly sad text (just below and left of the centre) against a neutral clip next to
    it, a clearly sad clip further out and a calm clip: Euclidean distance takes the neutral
    clip, the circumplex and soft-quadrant scores the sad one."""
    text = np.asarray([[0.42, 0.44]], np.float32)
    clips = np.asarray([[0.5, 0.5], [0.1, 0.15], [0.8, 0.3]], np.float32)
    best = {}
    for scoring in ("euclid", "circumplex", "quadrants"):
        heads = FAMILIES["va-regression"].train(
            bank, replace(fast_config("va-regression"), va_scoring=scoring)
        )
        model = EmotionModel(heads)
        best[scoring] = int(np.argmax(model.score(model.from_va(text), model.from_va(clips))))
    assert best == {"euclid": 0, "circumplex": 1, "quadrants": 1}


def test_va_text_targets_stretch_weigh_and_split_arousal(bank: FeatureBank) -> None:
    """EmoBank's ratings are stretched around the neutral point and weighted; with
    label_arousal_weight the labelled texts' arousal targets get their own weight."""
    from storycue.training.families.va import text_regression_data

    part = bank.text["train"]
    plain = text_regression_data(part, fast_config("va-regression"))
    cfg = replace(fast_config("va-regression"), emobank_weight=3.0, emobank_stretch=2.0,
                  label_arousal_weight=0.25)  # fmt: skip
    tuned = text_regression_data(part, cfg)
    emobank = np.asarray(part.sources)[np.isfinite(part.va).all(axis=1)] == "emobank"
    assert emobank.any() and (~emobank).any()
    np.testing.assert_allclose(
        tuned.y[emobank], np.clip(0.5 + 2.0 * (plain.y[emobank] - 0.5), 0, 1), atol=1e-6
    )
    np.testing.assert_allclose(tuned.y[~emobank], plain.y[~emobank])
    assert plain.w.ndim == 1 and tuned.w.shape == (len(tuned.y), 2)
    np.testing.assert_allclose(tuned.w[emobank], 3.0)
    np.testing.assert_allclose(tuned.w[~emobank], [[1.0, 0.25]] * int((~emobank).sum()))
    heads = FAMILIES["va-regression"].train(bank, cfg)  # per-target weights train
    assert heads.text_head.space_dim == 2


def test_va_side_targets_mark_only_labelled_texts_and_keep_their_quadrant(
    bank: FeatureBank,
) -> None:
    """With label_target="side" the labelled texts' targets are sides (EmoBank keeps its
    squared error), and the trained head puts labelled texts on their label's side."""
    from storycue.training.families.va import text_regression_data

    part = bank.text["train"]
    assert text_regression_data(part, fast_config("va-regression")).side is None
    cfg = replace(fast_config("va-regression"), label_target="side")
    data = text_regression_data(part, cfg)
    emobank = np.asarray(part.sources)[np.isfinite(part.va).all(axis=1)] == "emobank"
    assert data.side is not None
    np.testing.assert_array_equal(data.side, ~emobank)
    heads = FAMILIES["va-regression"].train(bank, cfg)
    val = bank.text["validation"]
    labelled = np.asarray([s != "emobank" for s in val.sources]) & np.isfinite(val.va).all(1)
    with torch.inference_mode():
        read = heads.text_head(torch.from_numpy(val.features[labelled])).numpy()
    same_side = (read > 0.5) == (val.va[labelled] > 0.5)
    assert same_side.mean() > 0.9, same_side.mean()


def test_side_loss_is_logistic_on_the_side_and_squared_error_elsewhere() -> None:
    from storycue.training.loop import weighted_loss

    pred = torch.tensor([[0.7, 0.2], [0.4, 0.6]])
    y = torch.tensor([[0.9, 0.1], [0.3, 0.8]])
    w = torch.tensor([1.0, 3.0])
    side = torch.tensor([True, False])
    k = 10.0
    sp = torch.nn.functional.softplus
    row0 = (sp(torch.tensor(-k * 0.2)) + sp(torch.tensor(-k * 0.3))) / 2  # both right side
    row1 = ((0.4 - 0.3) ** 2 + (0.6 - 0.8) ** 2) / 2
    expected = (1.0 * row0 + 3.0 * row1) / 4.0
    got = weighted_loss(pred, y, w, side, k)
    assert torch.isclose(got, torch.as_tensor(expected, dtype=got.dtype), atol=1e-6)
    # on the wrong side the loss grows with the distance past the neutral point
    wrong = weighted_loss(torch.tensor([[0.3, 0.6]]), y[:1], w[:1], side[:1], k)
    assert wrong > got


def _affine_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features whose true position is a linear read-out; rows of group 1 are rated on a
    scale of their own (0.2 + 0.3 × position), the rest at their positions."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((600, 8)).astype(np.float32)
    pos = 1 / (1 + np.exp(-(x[:, :2] @ np.array([[1.5, 0.0], [0.0, 1.5]]))))
    group = (np.arange(len(x)) % 2).astype(np.int64)
    y = np.where(group[:, None] == 1, 0.2 + 0.3 * pos, pos).astype(np.float32)
    return x, y, group, pos.astype(np.float32)


def _fit_affine(group: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from storycue.models.heads import HeadConfig, MLPHead
    from storycue.training.loop import RegressionData, fit_regression

    x, y, g, pos = _affine_problem()
    w = np.ones(len(x), np.float32)
    half = len(x) // 2
    train = RegressionData(x[:half], y[:half], w[:half], group=None if group is None else g[:half])
    val = RegressionData(x[half:], y[half:], w[half:], group=None if group is None else g[half:])
    torch.manual_seed(0)
    head = MLPHead(HeadConfig(in_dim=8, out_dim=2, hidden=[32], dropout=0.0, output="sigmoid"))
    report = fit_regression(head, train, val, lr=1e-2, weight_decay=0.0, max_epochs=300,
                            patience=30, batch_size=64, seed=0)  # fmt: skip
    with torch.inference_mode():
        read = head(torch.from_numpy(x[half:])).numpy()
    rated = g[half:] == 1
    return read[rated], pos[half:][rated], report


def test_rated_rows_met_up_to_a_learned_affine_map_are_read_at_the_labels_scale() -> None:
    """``RegressionData.group``: rows rated on their own scale teach ordering only; the head
    places them where the position-targeted rows say, and the map it fitted is reported."""
    read, pos, report = _fit_affine(group=np.ones(1, np.int64))
    assert np.abs(read - pos).mean() < 0.05, np.abs(read - pos).mean()
    (fitted,) = report["affine"]
    assert fitted["scale"] == pytest.approx([0.3, 0.3], abs=0.06)
    assert fitted["shift"] == pytest.approx([0.2, 0.2], abs=0.04)
    # Without the map the same rows pull the head towards their own scale.
    plain, _, plain_report = _fit_affine(group=None)
    assert "affine" not in plain_report
    assert np.abs(plain - pos).mean() > 2 * np.abs(read - pos).mean()


def test_va_rated_fit_affine_puts_emobank_rows_in_their_own_group(bank: FeatureBank) -> None:
    from storycue.training.families.va import text_regression_data
    from storycue.training.loop import RegressionData, fit_regression

    part = bank.text["train"]
    assert text_regression_data(part, fast_config("va-regression")).group is None
    cfg = replace(fast_config("va-regression"), rated_fit="affine")
    data = text_regression_data(part, cfg)
    emobank = np.asarray(part.sources)[np.isfinite(part.va).all(axis=1)] == "emobank"
    assert data.group is not None and emobank.any() and (~emobank).any()
    np.testing.assert_array_equal(data.group, emobank.astype(np.int64))
    heads = FAMILIES["va-regression"].train(bank, cfg)  # trains end to end with the map
    assert heads.text_head.space_dim == 2
    bad = RegressionData(data.x[:4], data.y[:4], data.w[:4], group=np.array([0, 1, -1, 0]))
    with pytest.raises(InvalidInputError, match=">= 0"):
        fit_regression(heads.text_head, bad, bad, lr=1e-3, weight_decay=0.0, max_epochs=1,
                       patience=1, batch_size=4, seed=0)  # fmt: skip


def _proximity_model(bank: FeatureBank, weight: float) -> EmotionModel:
    cfg = replace(fast_config("va-regression"), va_scoring="proximity", va_proximity=weight)
    return EmotionModel(FAMILIES["va-regression"].train(bank, cfg))


def test_va_regression_proximity_scoring_is_quadrants_minus_squared_distance(
    bank: FeatureBank,
) -> None:
    model = _proximity_model(bank, 2.0)
    info = model.info
    assert info.distance == "dot" and info.identity.dim == 8
    assert info.va_quadrant_sharpness == 10.0 and info.va_proximity == 2.0
    rng = np.random.default_rng(0)
    texts, clips = rng.random((7, 2)), rng.random((9, 2))
    q, g = model.from_va(texts, role="text"), model.from_va(clips, role="audio")
    # Text and clip vectors differ only in their two bias axes.
    np.testing.assert_allclose(model.from_va(texts, role="audio")[:, :6], q[:, :6])
    # The stored offsets give the points back exactly, whichever side.
    np.testing.assert_allclose(model.va_coordinates(q), texts, atol=1e-6)
    np.testing.assert_allclose(model.va_coordinates(g), clips, atol=1e-6)
    quads = EmotionModel(
        FAMILIES["va-regression"].train(bank, replace(fast_config("va-regression")))
    )
    agreement = quads.score(quads.from_va(texts), quads.from_va(clips))
    d2 = ((texts[:, None, :] - clips[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(model.score(q, g), agreement - 2.0 * d2, atol=1e-5)
    # The heads' outputs go through the same map: projected clips are catalogue vectors.
    _, g_proj = _project(model.heads, bank, "test")
    np.testing.assert_allclose(g_proj[:, 7], 1.0)
    with pytest.raises(ValueError, match="8 dimensions"):
        CheckpointInfo.model_validate(
            info.model_dump() | {"identity": {"name": "x", "version": "1", "dim": 4}}
        )


def test_proximity_ranks_within_a_quadrant_by_closeness(bank: FeatureBank) -> None:
    """A gently sad scene prefers gently sad music to deeply sad music (soft quadrants alone
    prefer the deeper clip), and a high-arousal scene still prefers high-arousal music."""
    gentle, deep, calm_sad = [0.38, 0.38], [0.08, 0.08], [0.3, 0.3]
    quads = EmotionModel(FAMILIES["va-regression"].train(bank, fast_config("va-regression")))
    prox = _proximity_model(bank, 2.0)
    scene = np.asarray([[0.4, 0.4]])
    clips = np.asarray([gentle, deep])
    assert int(np.argmax(quads.score(quads.from_va(scene), quads.from_va(clips)))) == 1
    assert int(np.argmax(prox.score(prox.from_va(scene), prox.from_va(clips, role="audio")))) == 0
    tense = np.asarray([[0.3, 0.8]])
    clips = np.asarray([[0.3, 0.7], calm_sad])
    assert int(np.argmax(prox.score(prox.from_va(tense), prox.from_va(clips, role="audio")))) == 0


def test_a_family_without_valence_arousal_says_so_in_the_continuous_report(
    trained: dict[str, Path], real_data_dir: Path
) -> None:
    from storycue.config import get_settings
    from storycue.evaluation.continuous import continuous_report, emobank_sets

    settings = get_settings()
    model = EmotionModel(EmotionHeads.load(trained["metric-2branch"]))
    sets = [s for s in emobank_sets(settings, "test") if s.name == "fiction-scenes-6"]
    rep = continuous_report(
        model, settings, sets=sets, encoder_name="sentence-transformers/all-MiniLM-L6-v2"
    )
    assert rep["rows"]["model"]["available"] is False
    assert "no valence-arousal axes" in rep["rows"]["model"]["reason"]
    assert rep["rows"]["probe"]["sets"]["fiction-scenes-6"]["n"] == len(sets[0])


@pytest.mark.parametrize("name", ["metric-2branch", "metric-3branch", "word-regression"])
def test_positive_pairs_end_closer_than_negatives(
    name: str, bank: FeatureBank, trained: dict[str, Path]
) -> None:
    heads = EmotionHeads.load(trained[name])
    q, g = _project(heads, bank, "train")
    sim = EmotionModel(heads).score(q, g)
    labels = bank.text["train"].labels
    rel = np.asarray(
        [[qd in MAPPING.get(lab, ()) for qd in bank.music["train"].quadrants] for lab in labels]
    )
    labelled = np.asarray([bool(lab) for lab in labels])
    pos = sim[labelled][rel[labelled]].mean()
    neg = sim[labelled][~rel[labelled]].mean()
    assert pos > neg + 0.1, (pos, neg)


def test_metric_3branch_has_tag_branch(bank: FeatureBank, trained: dict[str, Path]) -> None:
    heads = EmotionHeads.load(trained["metric-3branch"])
    assert "tag" in heads.heads and heads.info.heads["tag"].in_dim == bank.word_dim
    near = heads.info.training["relations"]["near_tags"]
    k = heads.info.training["config"]["k_nearest_tags"]
    n_tags = len({t for tags in TAGS.values() for t in tags})
    assert len(near["anger"]) == min(k, n_tags)
    # Ordered by similarity in the word space: the label's own quadrant's tags come first.
    assert set(near["anger"][: len(TAGS["Q2"])]) == set(TAGS["Q2"])
    assert heads.mood_positions.shape == (1, heads.info.identity.dim)


def test_word_mapping_of_synthetic_bank(bank: FeatureBank) -> None:
    assert bank.word_mapping() == MAPPING
    assert bank.taxonomies["goemotions"] == ["anger", "joy", "sadness"]


def test_prototype_diagnostic_of_a_circumplex_model_is_by_distance(
    trained: dict[str, Path],
) -> None:
    """The inner product favours the prototype farthest out; the diagnostic classifier of a
    circumplex model must take the nearest one in the plane."""
    from storycue.evaluation.harness import nearest_prototype

    model = EmotionModel(EmotionHeads.load(trained["va-regression"]))
    va = np.asarray([[0.52, 0.52], [0.53, 0.51], [0.8, 0.8], [0.82, 0.78]], np.float32)
    reference = model.from_va(va)
    labels = ["near", "near", "far", "far"]
    point = model.from_va(np.asarray([[0.54, 0.53]], np.float32))
    assert nearest_prototype(model, point, reference, labels) == ["near"]
    assert int(np.argmax(model.score(point, reference[[0, 2]]))) == 1  # dot picks "far"
    np.testing.assert_allclose(model.va_coordinates(reference), va, atol=1e-5)
    with pytest.raises(InvalidInputError):
        model.va_coordinates(va)  # 2 values where the space has 4


def test_soft_quadrant_model_reads_the_nearest_mood_words(trained: dict[str, Path]) -> None:
    """Words are read by distance in the VA plane: the inner product would name the most
    extreme word of the quadrant ("furious") for a merely tense point."""
    heads = EmotionHeads.load(trained["va-regression"])
    words = ["calm", "furious", "tense"]
    positions = np.asarray([[0.7, 0.2], [0.02, 0.99], [0.3, 0.78]], np.float32)
    model = EmotionModel(
        EmotionHeads(
            info=heads.info.model_copy(update={"mood_words": words}),
            heads=heads.heads,
            mood_positions=positions,
        )
    )
    point = model.from_va(np.asarray([[0.32, 0.75]], np.float32))[0]
    assert model.read(point).mood_words == ["tense", "furious", "calm"]
    by_dot = [words[i] for i in np.argsort(-(model.mood_space_positions @ point))]
    assert by_dot[0] == "furious"


def test_va_words_get_their_own_weight_and_keep_their_positions(bank: FeatureBank) -> None:
    """The lexicon's words (source ``nrc-words``) weigh ``word_weight``, are not stretched
    like EmoBank's ratings and, with label_arousal_weight, keep both targets' weight."""
    from storycue.training.families.base import TextPart
    from storycue.training.families.va import text_regression_data

    part = bank.text["train"]
    sources = ["nrc-words" if i % 3 == 0 and s != "emobank" else s
               for i, s in enumerate(part.sources)]  # fmt: skip
    with_words = TextPart(features=part.features, labels=part.labels, sources=sources,
                          texts=part.texts, va=part.va)  # fmt: skip
    cfg = replace(fast_config("va-regression"), emobank_stretch=2.0, word_weight=4.0,
                  label_arousal_weight=0.5,
                  text_sources=["isear", "goemotions", "emobank", "nrc-words"])  # fmt: skip
    data = text_regression_data(with_words, cfg)
    src = np.asarray(sources)[np.isfinite(part.va).all(axis=1)]
    words = src == "nrc-words"
    assert words.any()
    np.testing.assert_allclose(data.y[words], np.asarray(part.va, np.float32)[np.isfinite(
        part.va).all(axis=1)][words])  # fmt: skip
    np.testing.assert_allclose(data.w[words], 4.0)
    labelled = (src != "emobank") & ~words
    np.testing.assert_allclose(data.w[labelled], [[1.0, 0.5]] * int(labelled.sum()))
    # without the source in text_sources the words are left out
    left_out = text_regression_data(with_words, replace(cfg, text_sources=["isear", "emobank"]))
    assert len(left_out.y) == int((src == "isear").sum() + (src == "emobank").sum())
