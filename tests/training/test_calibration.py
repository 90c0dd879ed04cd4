"""Text-side calibration of valence-arousal models (``storycue calibrate``).

The shipped model's real heads and text encoder throughout; the rated prose is a small
EmoBank-format folder written here (60 dev sentences of three documents), so the fit runs
the real reading path in seconds and needs no dataset.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from storycue.config import Settings
from storycue.data.emobank import load_emobank, passage_windows, rescale
from storycue.data.textsets import PASSAGE_SIZES
from storycue.errors import InvalidInputError
from storycue.models.checkpoints import CheckpointInfo, EmotionHeads, resolve_checkpoint
from storycue.models.emotion import EmotionModel
from storycue.training.calibration import ShiftFit, calibrated, fit_text_shift
from storycue.training.modelcard import render_model_card

CALM = [
    "The lake lay still under a pale sky.",
    "She folded the letters and put them away.",
    "Snow settled on the roofs without a sound.",
    "He slept in the chair by the cold fire.",
]
WILD = [
    "The mob burst through the gates, screaming!",
    "Thunder cracked and the horses bolted in terror.",
    "He hammered on the door, shouting her name.",
    "Flames roared up the stairs as they ran.",
]


@pytest.fixture(scope="module")
def shipped() -> EmotionHeads:
    return EmotionHeads.load(resolve_checkpoint("va-regression"))


@pytest.fixture(scope="module")
def base_model(shipped: EmotionHeads, text_encoder: object) -> EmotionModel:
    model = EmotionModel(shipped)
    model.use_text_encoder(text_encoder)
    return model


@pytest.fixture
def rated_settings(tmp_path: Path) -> Settings:
    """A data folder whose EmoBank holds 60 dev sentences (three documents, calm and wild
    in turn) with ratings that follow them."""
    folder = tmp_path / "data" / "emobank"
    folder.mkdir(parents=True)
    with (folder / "emobank.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "split", "V", "A", "D", "text"])
        for i in range(60):
            calm = (i // 4) % 2 == 0
            text = f"{(CALM if calm else WILD)[i % 4]} It was day {i + 1}."  # no ties
            v, a = (3.3, 2.4) if calm else (2.2, 3.9)
            w.writerow([f"doc{i % 3}_{i * 100}_{i * 100 + 50}", "dev", v, a, 3.0, text])
    return Settings(data_dir=tmp_path / "data", home=tmp_path / "home")


def test_mean_shift_centres_the_fitted_readings(
    base_model: EmotionModel, rated_settings: Settings
) -> None:
    fit = fit_text_shift(base_model, rated_settings, axes="va", fit_on="all")
    assert fit.n_sentences == 60 and fit.n_passages > 0
    new = EmotionModel(calibrated(base_model.heads, fit, "9.9.9"))
    new.use_text_encoder(base_model.text_encoder)
    rows = load_emobank("validation", settings=rated_settings)
    texts = [r.text for r in rows] + [t for t, _, _ in passage_windows(rows, PASSAGE_SIZES)]
    rated = np.array(
        [(rescale(r.valence), rescale(r.arousal)) for r in rows]
        + [(v, a) for _, v, a in passage_windows(rows, PASSAGE_SIZES)]
    )
    target = np.clip(0.5 + fit.stretch * (rated - 0.5), 0, 1)
    before = base_model.va_coordinates(base_model.embed_text(texts))
    after = new.va_coordinates(new.embed_text(texts))
    assert abs(float((before - target).mean(axis=0)[1])) > 0.01  # there was a bias
    # the shift removes it (up to the points it pushed past 0 or 1)
    assert np.abs((after - target).mean(axis=0)).max() < 0.01
    assert fit.to_dict()["method"] == "mean"


def test_quantile_shift_matches_the_share_rated_above_the_midpoint(
    base_model: EmotionModel, rated_settings: Settings
) -> None:
    fit = fit_text_shift(base_model, rated_settings, axes="a", fit_on="passages", method="quantile")
    assert fit.shift[0] == 0.0
    rows = load_emobank("validation", settings=rated_settings)
    windows = passage_windows(rows, PASSAGE_SIZES)
    new = EmotionModel(calibrated(base_model.heads, fit, "9.9.9"))
    new.use_text_encoder(base_model.text_encoder)
    read = new.va_coordinates(new.embed_text([t for t, _, _ in windows]))
    rated_above = np.mean([a > 0.5 for _, _, a in windows])
    assert abs(float(np.mean(read[:, 1] > 0.5 + 1e-6)) - rated_above) <= 1.5 / len(windows)


def test_calibration_moves_texts_only_and_is_a_new_identity(
    shipped: EmotionHeads, tmp_path: Path
) -> None:
    fit = ShiftFit(
        shift=(0.02, 0.1), fit_on="all", method="mean", n_sentences=1, n_passages=1,
        stretch=3.0, bias_before={},
    )  # fmt: skip
    heads = calibrated(shipped, fit, "4.0.0-cal")
    assert heads.info.identity.version == "4.0.0-cal"
    assert heads.info.identity.name == shipped.info.identity.name
    assert heads.info.training["calibration"]["from"] == shipped.info.identity.key
    path = tmp_path / "cal.safetensors"
    sha = heads.save(path)
    loaded = EmotionHeads.load(path)
    assert loaded.info.va_text_shift == (0.02, 0.1)
    old, new = EmotionModel(shipped), EmotionModel(loaded)
    rng = np.random.default_rng(0)
    text_feats = rng.normal(0, 0.05, (64, shipped.text_head.config.in_dim)).astype(np.float32)
    audio_feats = rng.normal(0, 1, (8, shipped.audio_head.config.in_dim)).astype(np.float32)
    np.testing.assert_array_equal(
        old.project_audio_features(audio_feats), new.project_audio_features(audio_feats)
    )
    va_old = old.va_coordinates(old.project_text_features(text_feats))
    va_new = new.va_coordinates(new.project_text_features(text_feats))
    inside = ((va_old - [0.02, 0.1]) > 0.01).all(axis=1) & (va_old < 0.99).all(axis=1)
    assert inside.sum() > 32
    diff = va_old[inside] - va_new[inside]
    np.testing.assert_allclose(diff, np.broadcast_to([0.02, 0.1], diff.shape), atol=2e-4)
    np.testing.assert_allclose(
        loaded.mood_positions[:, :2],
        np.clip(shipped.mood_positions[:, :2] - [0.02, 0.1], 0, 1),
        atol=1e-6,
    )
    card = render_model_card(loaded.info, sha)
    assert "text calibration | valence − 0.0200, arousal − 0.1000" in card
    with pytest.raises(InvalidInputError, match="new version"):
        calibrated(shipped, fit, shipped.info.identity.version)


def test_bad_calibrations_are_refused(
    base_model: EmotionModel, shipped: EmotionHeads, rated_settings: Settings
) -> None:
    for kwargs in ({"axes": "x"}, {"fit_on": "scenes"}, {"method": "median"}):
        with pytest.raises(InvalidInputError):
            fit_text_shift(base_model, rated_settings, **kwargs)  # type: ignore[arg-type]
    fit = ShiftFit(
        shift=(0.0, 0.1), fit_on="all", method="mean", n_sentences=1, n_passages=1,
        stretch=3.0, bias_before={},
    )  # fmt: skip
    twice = EmotionModel(calibrated(shipped, fit, "9.9.8"))
    with pytest.raises(InvalidInputError, match="already calibrated"):
        fit_text_shift(twice, rated_settings)
    info = shipped.info.model_dump()
    # a shift without valence-arousal axes (and so without their scoring parameters)
    info.update(va_axes=False, va_centre=None, va_quadrant_sharpness=None, va_proximity=None,
                va_text_shift=(0, 0.1))  # fmt: skip
    with pytest.raises(ValueError, match="va_text_shift"):
        CheckpointInfo.model_validate(info)
