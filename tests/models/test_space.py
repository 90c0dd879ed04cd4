"""The geometry of the emotion spaces (storycue.models.space), without model weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from storycue.errors import InvalidInputError, ModelMismatchError
from storycue.models import space
from storycue.models.checkpoints import CheckpointInfo
from storycue.models.heads import HeadConfig
from support.toys import toy_info

HEAD = HeadConfig(in_dim=4, out_dim=2, hidden=[], dropout=0.0, output="sigmoid")


def info(dim: int = 2, distance: str = "euclid", **va: Any) -> CheckpointInfo:
    heads = {"text": HEAD, "audio": HEAD}
    return toy_info("toy", "va-regression", distance, dim, heads, va_axes=True, **va)


PLANE = info()
CIRCUMPLEX = info(distance="dot", va_centre=0.5)
QUADRANTS = info(dim=4, distance="dot", va_centre=0.5, va_quadrant_sharpness=6.0)
PROXIMITY = info(dim=8, distance="dot", va_centre=0.5, va_quadrant_sharpness=6.0, va_proximity=0.5)
POINTS = np.array([[0.9, 0.8], [0.2, 0.85], [0.15, 0.1], [0.7, 0.3], [0.5, 0.5]], np.float32)


@pytest.mark.parametrize("space_info", [PLANE, CIRCUMPLEX, QUADRANTS, PROXIMITY])
@pytest.mark.parametrize("role", ["text", "audio"])
def test_valence_arousal_round_trips_through_every_space(
    space_info: CheckpointInfo, role: Any
) -> None:
    vectors = space.from_va(space_info, POINTS, role=role)
    assert vectors.shape == (len(POINTS), space_info.identity.dim)
    back = space.va_coordinates(space_info, vectors)
    np.testing.assert_allclose(back, POINTS, atol=1e-5)


def test_soft_quadrants_are_memberships_of_the_four_quadrants() -> None:
    q = space.from_va(QUADRANTS, POINTS, role="text")
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
    assert list(q[:4].argmax(axis=1)) == [0, 1, 2, 3]  # Q1 +v+a, Q2 -v+a, Q3 -v-a, Q4 +v-a
    np.testing.assert_allclose(q[4], 0.25, atol=1e-6)  # the neutral point: no quadrant


def test_proximity_scores_are_agreement_minus_weighted_squared_distance() -> None:
    texts = space.from_va(PROXIMITY, POINTS, role="text")
    clips = space.from_va(PROXIMITY, POINTS[::-1].copy(), role="audio")
    got = space.score("dot", texts, clips)
    agreement = (
        space.from_va(QUADRANTS, POINTS, role="text")
        @ space.from_va(QUADRANTS, POINTS[::-1].copy(), role="audio").T
    )
    d2 = ((POINTS[:, None, :] - POINTS[::-1][None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(got, agreement - 0.5 * d2, atol=1e-5)


def test_scores_by_distance() -> None:
    q = np.array([[1.0, 0.0]], np.float32)
    g = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 4.0]], np.float32)
    np.testing.assert_allclose(space.score("dot", q, g), [[2.0, 0.0, 3.0]])
    np.testing.assert_allclose(space.score("cosine", q, g), [[1.0, 0.0, 0.6]], atol=1e-6)
    np.testing.assert_allclose(
        space.score("euclid", q, g), [[-1.0, -np.sqrt(2.0), -np.sqrt(20.0)]], atol=1e-6
    )


def test_nearest_words_read_the_plane_of_circumplex_spaces() -> None:
    words = info(distance="dot", va_centre=0.5, mood_words=["calm", "angry", "sad", "happy"])
    positions = np.array([[0.7, 0.2], [0.2, 0.9], [0.15, 0.2], [0.9, 0.8]], np.float32)
    vector = space.from_va(words, np.array([[0.85, 0.75]], np.float32))[0]
    assert space.nearest_words(words, positions, vector, 2) == ["happy", "calm"]
    assert space.nearest_words(words, np.zeros((0, 0), np.float32), vector, 2) == []


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(InvalidInputError, match="valence, arousal"):
        space.from_va(PLANE, np.zeros((3, 3), np.float32))
    with pytest.raises(InvalidInputError, match="role"):
        space.from_va(PLANE, POINTS, role="lyrics")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="8 values"):
        space.va_coordinates(PROXIMITY, np.zeros((2, 4), np.float32))
    words_only = info().model_copy(update={"va_axes": False})
    with pytest.raises(ModelMismatchError, match="no valence-arousal axes"):
        space.va_coordinates(words_only, POINTS)
