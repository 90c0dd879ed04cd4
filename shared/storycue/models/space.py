"""The geometry of an emotion space: head outputs → space vectors → scores and back.

Pure functions of a checkpoint's :class:`CheckpointInfo` and arrays, no model weights:
what :class:`storycue.models.emotion.EmotionModel` applies after its heads, and what
anything that holds stored vectors (a search, a plot, a report) needs to read them.

- Plain spaces (Euclidean, cosine, dot): the head outputs are the vectors.
- Circumplex (``va_centre``): the offsets from the neutral point, scored by inner product.
- Soft quadrants (``va_quadrant_sharpness``): the four quadrant memberships of the offsets.
- Quadrants plus proximity (``va_proximity``): 8-d vectors whose inner product is the
  quadrant agreement minus ``w`` × the squared distance in the valence-arousal plane.
"""

from __future__ import annotations

import numpy as np

from storycue.errors import InvalidInputError, ModelMismatchError
from storycue.models.checkpoints import CheckpointInfo, Distance, Role


def to_space(info: CheckpointInfo, head_out: np.ndarray, *, role: Role) -> np.ndarray:
    """Head outputs → space vectors: circumplex models subtract the neutral point;
    soft-quadrant models then map the offsets to the four quadrant memberships;
    proximity models append the scaled offsets and the two role-dependent bias axes
    (see ``CheckpointInfo.va_proximity``). Every other space is the same for both roles."""
    centre, k = info.va_centre, info.va_quadrant_sharpness
    if centre is None:
        return head_out
    off = np.asarray(head_out, np.float64).copy()
    off[:, :2] -= centre
    if k is None:
        return off.astype(np.float32)
    sv = 1.0 / (1.0 + np.exp(-k * off[:, 0]))  # P(valence above the centre)
    sa = 1.0 / (1.0 + np.exp(-k * off[:, 1]))  # P(arousal above the centre)
    quads = np.stack([sv * sa, (1 - sv) * sa, (1 - sv) * (1 - sa), sv * (1 - sa)], axis=1)
    # Q1 (+v +a), Q2 (-v +a), Q3 (-v -a), Q4 (+v -a)
    w = info.va_proximity
    if w is None:
        return quads.astype(np.float32)
    sq = w * (off[:, :2] ** 2).sum(axis=1, keepdims=True)
    one = np.ones_like(sq)
    bias = np.concatenate([one, -sq] if role == "text" else [-sq, one], axis=1)
    return np.concatenate([quads, np.sqrt(2.0 * w) * off[:, :2], bias], axis=1).astype(np.float32)


def from_va(info: CheckpointInfo, va: np.ndarray, *, role: Role = "text") -> np.ndarray:
    """Space vectors of (valence, arousal) points ``(N, 2)`` in [0, 1] of a 2-d
    valence-arousal model; the inverse of :func:`va_coordinates`."""
    if not info.va_axes or info.head_dim != 2:
        raise ModelMismatchError(f"model {info.identity.key} is not a 2-d valence-arousal model")
    x = np.asarray(va, np.float32)
    if x.ndim != 2 or x.shape[1] != 2:
        raise InvalidInputError(f"expected (valence, arousal) rows, got shape {x.shape}")
    if role not in ("text", "audio"):
        raise InvalidInputError(f"role must be 'text' or 'audio', got {role!r}")
    return to_space(info, x, role=role)


def va_coordinates(info: CheckpointInfo, vectors: np.ndarray) -> np.ndarray:
    """(valence, arousal) in [0, 1] of space vectors ``(N, d)`` of a valence-arousal
    model: the first two axes, plus the neutral point for circumplex models, or the
    inverse of the soft-quadrant map (exact up to float precision within ±8/k of the
    centre; memberships saturate beyond), or the stored offsets of a proximity model."""
    if not info.va_axes:
        raise ModelMismatchError(f"model {info.identity.key} has no valence-arousal axes")
    x = np.asarray(vectors, np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != info.identity.dim:
        raise InvalidInputError(
            f"expected vectors of {info.identity.dim} values, got shape {x.shape}"
        )
    centre, k = info.va_centre, info.va_quadrant_sharpness
    if centre is None:
        return x[:, :2].astype(np.float32)
    if k is None:
        return (x[:, :2] + centre).astype(np.float32)
    if info.va_proximity is not None:  # exact: the scaled offsets are stored
        scale = float(np.sqrt(2.0 * info.va_proximity))
        return np.asarray(x[:, 4:6] / scale + centre, np.float32)
    eps = 1e-7
    sv = np.clip(x[:, 0] + x[:, 3], eps, 1 - eps)
    sa = np.clip(x[:, 0] + x[:, 1], eps, 1 - eps)
    va = np.stack([np.log(sv / (1 - sv)), np.log(sa / (1 - sa))], axis=1) / k + centre
    return va.astype(np.float32)


def score(distance: Distance, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Similarity (higher is better) of queries ``(Q, d)`` to gallery ``(G, d)``."""
    q = np.asarray(query, np.float32)
    g = np.asarray(gallery, np.float32)
    if distance == "dot":
        return np.asarray(q @ g.T, np.float32)
    if distance == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-9)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
        return np.asarray(qn @ gn.T, np.float32)
    d2 = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2.0 * q @ g.T
    return np.asarray(-np.sqrt(np.maximum(d2, 0.0)), np.float32)


def nearest_words(
    info: CheckpointInfo, positions: np.ndarray, vector: np.ndarray, n_words: int
) -> list[str]:
    """The ``n_words`` mood words nearest ``vector``. ``positions`` are the stored head
    outputs of the words. Circumplex and soft-quadrant models read words by distance in
    the valence-arousal plane: their inner product would name the most extreme words of
    the point's quadrant rather than the ones that describe it."""
    if not positions.size or not info.mood_words:
        return []
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if info.va_centre is not None:  # stored positions are already VA points
        va = va_coordinates(info, v[None, :])[0]
        d = np.linalg.norm(np.asarray(positions)[:, :2] - va, axis=1)
    else:
        pos = to_space(info, np.asarray(positions, np.float32), role="audio")
        if info.distance == "cosine":
            d = -(pos @ (v / max(float(np.linalg.norm(v)), 1e-9)))
        elif info.distance == "dot":
            d = -(pos @ v)
        else:
            d = np.linalg.norm(pos - v[None, :], axis=1)
    return [info.mood_words[i] for i in np.argsort(d, kind="stable")[:n_words]]
