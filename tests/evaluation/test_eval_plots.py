"""Figure 3 pictures are written as valid PNGs for hand-built models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_eval_report import make_gallery, make_texts, va_model

from storycue.errors import InvalidInputError
from storycue.evaluation.plots import figure3, plot_va_plane
from storycue.models.emotion import EmotionModel
from storycue.models.heads import HeadConfig, MLPHead
from support.toys import toy_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    from PIL import Image

    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
        assert img.format == "PNG"


def test_va_plane_and_2d_space(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _, labels, feats = make_texts(60, rng)
    gallery = make_gallery(24, rng, "toy")
    model = va_model()
    text = model.project_text_features(feats)
    music = model.project_audio_features(gallery.features["features"])
    tags = ["happy", "sad", "calm"]
    paths = figure3(
        model,
        text,
        labels,
        music,
        gallery.quadrants,
        tmp_path,
        tag_words=tags,
        tag_features=rng.normal(size=(3, 6)),
        name="toy",
    )
    assert [p.name for p in paths] == ["toy-va-plane.png", "toy-space-2d.png"]
    for p in paths:
        assert_png(p)
    # deterministic: the same inputs give the same file
    again = plot_va_plane(text, labels, music, gallery.quadrants, tmp_path / "again.png")
    first = plot_va_plane(text, labels, music, gallery.quadrants, tmp_path / "first.png")
    assert again.read_bytes() == first.read_bytes()


def test_va_plane_rejects_bad_shapes(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        plot_va_plane(np.zeros((3, 3)), ["a"] * 3, np.zeros((2, 2)), ["Q1"] * 2, tmp_path / "x.png")
    with pytest.raises(InvalidInputError):
        plot_va_plane(np.zeros((3, 2)), ["a"] * 2, np.zeros((2, 2)), ["Q1"] * 2, tmp_path / "x.png")


def _metric_model(d_text: int = 6, d_audio: int = 5, dim: int = 8) -> EmotionModel:
    torch.manual_seed(0)
    cfgs = {
        "text": HeadConfig(in_dim=d_text, out_dim=dim, hidden=[], dropout=0.0, output="l2"),
        "audio": HeadConfig(in_dim=d_audio, out_dim=dim, hidden=[], dropout=0.0, output="l2"),
        "tag": HeadConfig(in_dim=d_text, out_dim=dim, hidden=[], dropout=0.0, output="l2"),
    }
    heads = {role: MLPHead(cfg).eval() for role, cfg in cfgs.items()}
    training = {"data": {"word_space": "encoder:fake-encoder"}}
    return toy_model("toy-metric", "metric-3branch", "cosine", dim, heads, training=training)


def _toy_figure3(
    model: EmotionModel, rng: np.random.Generator, out: Path, n_texts: int, n_clips: int,
    **kwargs: Any,
) -> list[Path]:  # fmt: skip
    """Figure 3 of ``model`` for toy texts and a toy gallery."""
    _, labels, feats = make_texts(n_texts, rng)
    gallery = make_gallery(n_clips, rng, "toy")
    return figure3(
        model,
        model.project_text_features(feats),
        labels,
        model.project_audio_features(gallery.features["features"]),
        gallery.quadrants,
        out,
        **kwargs,
    )


@pytest.mark.slow
def test_umap_space_for_a_learned_space(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """UMAP's numba compilation takes a minute or more, so this runs only with ``-m slow``
    (pyproject: slow tests are deselected unless asked for)."""
    rng = np.random.default_rng(0)
    paths = _toy_figure3(
        _metric_model(), rng, tmp_path, 60, 32,
        tag_words=["happy", "sad", "calm", "tense"], tag_features=rng.normal(size=(4, 6)),
    )  # fmt: skip
    assert [p.name for p in paths] == ["space-umap.png"]
    assert_png(paths[0])


def test_a_gallery_named_by_a_path_gives_flat_file_names(tmp_path: Path) -> None:
    from storycue.evaluation.plots import file_slug

    assert file_slug("4q-test") == "4q-test"
    slug = file_slug("/a/b")
    assert slug.startswith("b-") and "/" not in slug and len(slug) == len("b-") + 8
    assert file_slug("/a/b") != file_slug("/c/b")  # two folders called b do not collide
    assert "/" not in file_slug("/music/my songs/") and file_slug("/").startswith("gallery-")
    paths = _toy_figure3(
        va_model(), np.random.default_rng(0), tmp_path, 20, 8,
        name="va-regression-4.0.0-isear-test-/data/music/gallery",
    )  # fmt: skip
    assert all(p.parent == tmp_path for p in paths), paths
    assert paths[0].name.startswith("va-regression-4.0.0-isear-test-gallery-")
