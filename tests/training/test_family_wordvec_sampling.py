"""Word-vector files and distance-weighted negative sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from storycue.errors import DatasetFormatError, DatasetNotFoundError, InvalidInputError
from storycue.training.families import (
    FileWordSpace,
    distance_weighted_probs,
    load_word_vectors,
    sample_negatives,
)
from storycue.training.families.wordvec import tokens


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_word2vec_text_with_header(tmp_path: Path) -> None:
    p = _write(tmp_path / "w2v.txt", "3 2\nAnger 1 0\njoy 0 1.5\nanger 9 9\n")
    vecs = load_word_vectors(p)
    assert sorted(vecs) == ["anger", "joy"]
    np.testing.assert_allclose(vecs["anger"], [1, 0])  # first occurrence wins
    np.testing.assert_allclose(vecs["joy"], [0, 1.5])


def test_load_glove_without_header_and_filter(tmp_path: Path) -> None:
    p = _write(tmp_path / "glove.txt", "calm 0.5 0.5 0\nnervous 1 0 0\njittery 0 1 0\n\n")
    vecs = load_word_vectors(p, words=["NERVOUS", "jittery"])
    assert sorted(vecs) == ["jittery", "nervous"]
    assert vecs["nervous"].shape == (3,)


def test_word_vector_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        load_word_vectors(tmp_path / "absent.txt")
    with pytest.raises(DatasetFormatError):
        load_word_vectors(_write(tmp_path / "bad.txt", "a 1 2\nb 1\n"))
    with pytest.raises(DatasetFormatError):
        load_word_vectors(_write(tmp_path / "nan.txt", "a 1 x\n"))


def test_file_word_space_phrases(tmp_path: Path) -> None:
    p = _write(tmp_path / "glove.txt", "nervous 1 0 0\njittery 0 1 0\ncalm 0 0 2\n")
    space = FileWordSpace(p)
    emb = space.embed(["Nervous/Jittery", "calm"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(emb[0], np.array([1, 1, 0]) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(emb[1], [0, 0, 1])
    assert tokens("Angry-Disgusted") == ["angry", "disgusted"]
    with pytest.raises(InvalidInputError, match="unknownword"):
        space.embed(["unknownword"])


def test_distance_weighted_probs_are_normalised_and_favour_moderate_distances() -> None:
    d = torch.tensor([[0.1, 0.5, 0.8, 1.2, 1.39, 1.5, 1.9]])
    p = distance_weighted_probs(d, dim=32)
    assert torch.isfinite(p).all()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(p[0, 5]) == 0.0 and float(p[0, 6]) == 0.0  # beyond the non-zero-loss cutoff
    assert float(p[0, 0]) == pytest.approx(float(p[0, 1]))  # clipped below at the cutoff
    assert float(p[0, 2]) > float(p[0, 3]) > float(p[0, 4]) > 0.0
    # masked candidates get nothing; an all-masked row is all zero
    mask = torch.tensor([[True, False, True, True, True, True, True], [False] * 7])
    pm = distance_weighted_probs(d.repeat(2, 1), dim=32, mask=mask)
    assert float(pm[0, 1]) == 0.0 and float(pm[0].sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(pm[1].sum()) == 0.0
    # all candidates too far: uniform over the allowed ones
    far = distance_weighted_probs(torch.tensor([[1.6, 1.8]]), dim=32)
    np.testing.assert_allclose(far.numpy(), [[0.5, 0.5]])


def test_distance_weighted_sampling_spreads_distances() -> None:
    """Uniform sampling of random unit vectors concentrates near √2; DWS pulls the
    sampled distances into the informative range below the cut-off."""
    g = torch.Generator().manual_seed(0)
    dim = 16
    anchors = torch.nn.functional.normalize(torch.randn(256, dim, generator=g), dim=1)
    cands = torch.nn.functional.normalize(torch.randn(256, dim, generator=g), dim=1)
    mask = torch.ones(256, 256, dtype=torch.bool)
    dist = torch.cdist(anchors, cands)
    dws = sample_negatives(anchors, cands, mask, g, strategy="distance")
    rnd = sample_negatives(anchors, cands, mask, g, strategy="random")
    d_dws = dist[torch.arange(256), dws]
    d_rnd = dist[torch.arange(256), rnd]
    assert float(d_dws.mean()) < float(d_rnd.mean()) - 0.1
    assert float((d_dws < 1.4).float().mean()) > 0.95
    assert float(d_dws.std()) > 0.0


def test_sample_negatives_respects_the_mask() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 8, generator=g)
    c = torch.randn(6, 8, generator=g)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, 2] = True
    mask[1, [1, 4]] = True
    mask[2] = True
    out = sample_negatives(a, c, mask, g)
    assert int(out[0]) == 2
    assert int(out[1]) in (1, 4)
    assert 0 <= int(out[2]) < 6
    assert int(out[3]) == -1
