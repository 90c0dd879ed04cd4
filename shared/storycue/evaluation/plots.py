"""Pictures of an emotion space, after the paper's Figure 3 (PNG files, matplotlib Agg).

* :func:`plot_va_plane` — (a) the valence-arousal plane of a VA model: text queries
  coloured by label, music clips by quadrant, each label's centroid annotated.
* :func:`plot_space` — (b) a learned space seen in 2-D: music clips, text queries and mood
  tags. A 2-D space (VA models) is drawn as is; any other space is projected with UMAP
  fitted on the music embeddings, text and tag embeddings being placed with ``transform``.
* :func:`figure3` — both for a model, a query set and a gallery. Tag embeddings come from
  the model's ``"tag"`` head when it has one whose word space is the text encoder,
  otherwise from the text head applied to the tag words' encoder features.

Everything is deterministic: a fixed ``random_state`` for UMAP and for the subsample of
text points (at most ``max_text_points`` are drawn, so large query sets stay legible).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from storycue.data.fourq import QUADRANTS
from storycue.errors import InvalidInputError
from storycue.log import get_logger

log = get_logger(__name__)

#: Colour of each quadrant (Q1 happy/excited, Q2 angry/tense, Q3 sad, Q4 calm).
QUADRANT_COLOURS: dict[str, str] = {
    "Q1": "#f28e2b",
    "Q2": "#d62728",
    "Q3": "#1f77b4",
    "Q4": "#2ca02c",
}
_QUADRANT_NAMES = {
    "Q1": "Q1 +V +A",
    "Q2": "Q2 −V +A",
    "Q3": "Q3 −V −A",
    "Q4": "Q4 +V −A",
}
_LABEL_PALETTE = (
    "#e15759",
    "#4e79a7",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#76b7b2",
    "#bab0ac",
    "#f28e2b",
)
DEFAULT_MAX_TEXT_POINTS = 1500
DEFAULT_MAX_TAG_LABELS = 30


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def label_colours(labels: Sequence[str]) -> dict[str, str]:
    """A fixed colour for each distinct label (sorted order)."""
    uniq = sorted(set(labels))
    return {lab: _LABEL_PALETTE[i % len(_LABEL_PALETTE)] for i, lab in enumerate(uniq)}


def subsample(n: int, limit: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """Sorted indices of at most ``limit`` of ``n`` rows (all when ``n <= limit``)."""
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False)).astype(np.int64)


def _points(x: npt.ArrayLike, what: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidInputError(f"{what} must be an (n, 2) array, got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InvalidInputError(f"{what}: {arr.shape[0]} points for {n} labels")
    return arr


def _legend(ax: Any) -> None:
    leg = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    for handle in leg.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return path


def _draw(
    ax: Any,
    music_xy: np.ndarray,
    music_quadrants: Sequence[str],
    text_xy: np.ndarray,
    text_labels: Sequence[str],
    *,
    max_text_points: int,
    seed: int,
) -> None:
    colours = label_colours(text_labels)
    keep = subsample(len(text_labels), max_text_points, seed)
    labels = np.asarray(list(text_labels), dtype=object)
    for lab, col in colours.items():
        idx = keep[labels[keep] == lab]
        ax.scatter(
            text_xy[idx, 0],
            text_xy[idx, 1],
            s=7,
            c=col,
            alpha=0.3,
            linewidths=0,
            label=f"text: {lab} ({int((labels == lab).sum())})",
        )
    quads = np.asarray(list(music_quadrants), dtype=object)
    for q in QUADRANTS:
        idx = np.flatnonzero(quads == q)
        if idx.size:
            ax.scatter(
                music_xy[idx, 0],
                music_xy[idx, 1],
                s=36,
                marker="^",
                c=QUADRANT_COLOURS[q],
                edgecolors="black",
                linewidths=0.5,
                label=f"music: {_QUADRANT_NAMES[q]} ({idx.size})",
            )
    centres = {lab: text_xy[labels == lab].mean(axis=0) for lab in colours}
    both = np.concatenate([text_xy, music_xy])
    span = np.maximum(np.nanmax(both, axis=0) - np.nanmin(both, axis=0), 1e-9)
    for lab, (tx, ty) in _label_positions(centres, float(span[0]), float(span[1])).items():
        centre = centres[lab]
        ax.scatter([centre[0]], [centre[1]], s=140, marker="*", c=colours[lab], edgecolors="black")
        ax.annotate(
            lab,
            (float(centre[0]), float(centre[1])),
            xytext=(tx, ty),
            textcoords="data",
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#555555"},
            fontsize=10,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8, "lw": 0.5},
        )


def _label_positions(
    centres: dict[str, np.ndarray], x_span: float, y_span: float
) -> dict[str, tuple[float, float]]:
    """Where (data coordinates) each centroid's label goes: just above-right of it, pushed
    down below any label already placed nearby (labels placed top to bottom), so no label
    hides another."""
    gap = 0.045 * y_span
    placed: list[tuple[float, float]] = []
    out: dict[str, tuple[float, float]] = {}
    for lab in sorted(centres, key=lambda k: (-float(centres[k][1]), k)):
        tx = float(centres[lab][0]) + 0.025 * x_span
        ty = float(centres[lab][1]) + 0.02 * y_span
        moved = True
        while moved:
            moved = False
            for px, py in placed:
                if abs(px - tx) < 0.2 * x_span and abs(py - ty) < 0.999 * gap:
                    ty = py - gap
                    moved = True
        placed.append((tx, ty))
        out[lab] = (tx, ty)
    return out


def plot_va_plane(
    text_va: npt.ArrayLike,
    text_labels: Sequence[str],
    music_va: npt.ArrayLike,
    music_quadrants: Sequence[str],
    path: Path,
    *,
    title: str = "Valence-arousal plane",
    max_text_points: int = DEFAULT_MAX_TEXT_POINTS,
    seed: int = 0,
) -> Path:
    """Figure 3(a): text queries (by label) and music clips (by quadrant) in the VA plane
    ([0, 1]², centre lines at 0.5), each label's centroid starred and named."""
    t = _points(text_va, "text VA", len(text_labels))
    m = _points(music_va, "music VA", len(music_quadrants))
    if not len(text_labels) or not len(music_quadrants):
        raise InvalidInputError("the VA plane needs text and music points")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    for q, (x, y) in {"Q1": (0.98, 0.98), "Q2": (0.02, 0.98), "Q3": (0.02, 0.02)}.items():
        ax.text(
            x,
            y,
            _QUADRANT_NAMES[q],
            ha="right" if x > 0.5 else "left",
            va="top" if y > 0.5 else "bottom",
            color=QUADRANT_COLOURS[q],
            fontsize=9,
        )
    ax.text(
        0.98,
        0.02,
        _QUADRANT_NAMES["Q4"],
        ha="right",
        va="bottom",
        color=QUADRANT_COLOURS["Q4"],
        fontsize=9,
    )
    _draw(ax, m, music_quadrants, t, text_labels, max_text_points=max_text_points, seed=seed)
    lo = min(0.0, float(np.nanmin([t.min(), m.min()])))
    hi = max(1.0, float(np.nanmax([t.max(), m.max()])))
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.set_title(title)
    _legend(ax)
    return _save(fig, path)


def umap_projection(
    music: npt.ArrayLike,
    others: Sequence[npt.ArrayLike] = (),
    *,
    metric: str = "euclidean",
    random_state: int = 0,
    n_neighbors: int = 15,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """UMAP fitted on ``music`` (``(n, d)``), then ``transform`` of each of ``others``;
    2-D coordinates. Deterministic for a fixed ``random_state``."""
    import umap

    x = np.asarray(music, np.float32)
    if x.ndim != 2 or x.shape[0] < 4:
        raise InvalidInputError(f"UMAP needs at least 4 music points, got {x.shape}")
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=max(2, min(n_neighbors, x.shape[0] - 1)),
        metric=metric,
        random_state=random_state,
        transform_seed=random_state,
        n_jobs=1,
    )
    music_xy = np.asarray(reducer.fit_transform(x), np.float64)
    placed = [
        np.asarray(reducer.transform(np.asarray(o, np.float32)), np.float64)
        if np.asarray(o).shape[0]
        else np.zeros((0, 2))
        for o in others
    ]
    return music_xy, placed


def plot_space(
    music_xy: npt.ArrayLike,
    music_quadrants: Sequence[str],
    text_xy: npt.ArrayLike,
    text_labels: Sequence[str],
    path: Path,
    *,
    tag_xy: npt.ArrayLike | None = None,
    tag_words: Sequence[str] = (),
    title: str = "Emotion space",
    axis_labels: tuple[str, str] = ("UMAP 1", "UMAP 2"),
    max_text_points: int = DEFAULT_MAX_TEXT_POINTS,
    max_tag_labels: int = DEFAULT_MAX_TAG_LABELS,
    seed: int = 0,
) -> Path:
    """Figure 3(b): 2-D coordinates of music clips, text queries and (optionally) mood
    tags, the tags drawn as crosses with their words (at most ``max_tag_labels`` named)."""
    m = _points(music_xy, "music points", len(music_quadrants))
    t = _points(text_xy, "text points", len(text_labels))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 8))
    _draw(ax, m, music_quadrants, t, text_labels, max_text_points=max_text_points, seed=seed)
    if tag_xy is not None and len(tag_words):
        g = _points(tag_xy, "tag points", len(tag_words))
        ax.scatter(
            g[:, 0],
            g[:, 1],
            s=22,
            marker="x",
            c="black",
            linewidths=1.0,
            label=f"mood tags ({len(tag_words)})",
        )
        for i in subsample(len(tag_words), max_tag_labels, seed):
            ax.annotate(
                tag_words[i],
                (float(g[i, 0]), float(g[i, 1])),
                xytext=(3, -8),
                textcoords="offset points",
                fontsize=7,
                color="#333333",
            )
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    _legend(ax)
    return _save(fig, path)


def tag_embeddings(model: Any, tag_features: np.ndarray) -> tuple[np.ndarray, str]:
    """Tag words in the model's space: its ``"tag"`` head when the checkpoint's word space
    is the text encoder (features L2-normalised, as that word space does), else the text
    head on the encoder features. Returns ``(embeddings, how)``."""
    import torch

    feats = np.asarray(tag_features, np.float32)
    head = model.heads.heads.get("tag")
    space = str(model.info.training.get("data", {}).get("word_space", ""))
    if head is not None and space.startswith("encoder:") and head.config.in_dim == feats.shape[1]:
        unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        with torch.inference_mode():
            out = head(torch.from_numpy(unit).to(model.device)).float().cpu().numpy()
        return np.asarray(out, np.float32), "tag head"
    return np.asarray(model.project_text_features(feats), np.float32), "text head"


def file_slug(name: str) -> str:
    """``name`` as one safe piece of a file name: a gallery named by a folder path
    (``/a/b``) becomes its last part plus a short hash of the whole (``b-1a2b3c4d``), so
    plots never land in nested folders and two folders called ``b`` do not collide."""
    import hashlib
    import re

    piece = re.sub(r"[^A-Za-z0-9._-]+", "-", name.rstrip("/").rsplit("/", 1)[-1]).strip("-.")
    if piece == name:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{piece or 'gallery'}-{digest}"


def figure3(
    model: Any,
    text_embedded: npt.ArrayLike,
    text_labels: Sequence[str],
    music_embedded: npt.ArrayLike,
    music_quadrants: Sequence[str],
    out_dir: Path,
    *,
    tag_words: Sequence[str] = (),
    tag_features: npt.ArrayLike | None = None,
    name: str = "",
    random_state: int = 0,
    max_text_points: int = DEFAULT_MAX_TEXT_POINTS,
) -> list[Path]:
    """Write Figure 3 for ``model`` (an :class:`~storycue.models.emotion.EmotionModel`)
    from already projected text queries and music clips; the PNG paths.

    ``<name>va-plane.png`` (VA models) and ``<name>space-2d.png`` (2-D spaces, drawn
    directly) or ``<name>space-umap.png`` (others). ``tag_features`` are the text-encoder
    features of ``tag_words``, placed by :func:`tag_embeddings`.
    """
    t = np.asarray(text_embedded, np.float32)
    m = np.asarray(music_embedded, np.float32)
    ident = model.identity
    name = "-".join(file_slug(p) for p in name.split("-")) if "/" in name else name
    stem = f"{name}-" if name and not name.endswith("-") else name
    title = f"{ident.name} {ident.version} ({model.info.family})"
    paths: list[Path] = []
    sub = subsample(t.shape[0], max_text_points, random_state)
    t_labels = [text_labels[i] for i in sub]
    if model.info.va_axes:
        paths.append(
            plot_va_plane(
                model.va_coordinates(t[sub]),
                t_labels,
                model.va_coordinates(m),
                music_quadrants,
                out_dir / f"{stem}va-plane.png",
                title=f"{title}: valence-arousal plane",
                max_text_points=max_text_points,
                seed=random_state,
            )
        )
    tags = np.zeros((0, t.shape[1]), np.float32)
    how = ""
    if tag_words and tag_features is not None:
        tags, how = tag_embeddings(model, np.asarray(tag_features, np.float32))
    if t.shape[1] == 2 or model.info.va_axes:
        music_xy, text_xy, tag_xy = m, t[sub], tags
        axes = ("axis 1", "axis 2")
        if model.info.va_axes:
            axes = ("valence", "arousal")
            music_xy, text_xy = model.va_coordinates(m), model.va_coordinates(t[sub])
            tag_xy = model.va_coordinates(tags) if len(tags) else tags
        target = out_dir / f"{stem}space-2d.png"
    else:
        metric = "cosine" if model.distance == "cosine" else "euclidean"
        music_xy, (text_xy, tag_xy) = umap_projection(
            m, [t[sub], tags], metric=metric, random_state=random_state
        )
        axes = ("UMAP 1", "UMAP 2")
        target = out_dir / f"{stem}space-umap.png"
    paths.append(
        plot_space(
            music_xy,
            music_quadrants,
            text_xy,
            t_labels,
            target,
            tag_xy=tag_xy if len(tag_words) and tag_features is not None else None,
            tag_words=list(tag_words) if tag_features is not None else [],
            title=f"{title}: space" + (f" (tags by {how})" if how else ""),
            axis_labels=axes,
            max_text_points=max_text_points,
            seed=random_state,
        )
    )
    log.info("figure3_written", paths=[str(p) for p in paths])
    return paths


def model_figure3(
    model: Any,
    queries: Any,
    gallery: Any,
    settings: Any,
    out_dir: Path,
    *,
    random_state: int = 0,
    max_text_points: int = DEFAULT_MAX_TEXT_POINTS,
) -> list[Path]:
    """:func:`figure3` for a model on a :class:`~storycue.evaluation.harness.QuerySet`
    and a :class:`~storycue.evaluation.harness.Gallery` (query features from the shared
    cache; tags = the gallery clips' distinct AllMusic mood tags)."""
    from storycue.evaluation.harness import gallery_input
    from storycue.models.features import feature_cache_dir, text_features

    feats = text_features(
        model.text_encoder,
        queries.texts,
        feature_cache_dir(settings),
        tag=f"queries-{queries.name}",
    )
    text_emb = model.project_text_features(feats)
    music_emb = model.project_audio_features(gallery_input(model, gallery))
    tags = sorted({" ".join(m.split()).lower() for r in gallery.records for m in r.moods})
    tag_feats = np.asarray(model.text_encoder.encode(tags), np.float32) if tags else None
    ident = model.identity
    return figure3(
        model,
        text_emb,
        queries.labels,
        music_emb,
        gallery.quadrants,
        out_dir,
        tag_words=tags,
        tag_features=tag_feats,
        name=f"{ident.name}-{ident.version}-{queries.name}-{file_slug(gallery.name)}",
        random_state=random_state,
        max_text_points=max_text_points,
    )


def table_figures(
    settings: Any,
    models: Sequence[str],
    query_sets: Sequence[str],
    split: str,
    folder: Path,
) -> list[Path]:
    """Figure 3 of every model of a Table-3 run for every query set, against the 4Q
    ``split`` part; the files written."""
    from storycue.evaluation.harness import fourq_gallery, load_queries
    from storycue.models.emotion import load_configured_model

    written: list[Path] = []
    for name in models:
        model = load_configured_model(settings, name)
        gallery = fourq_gallery(split, model.audio_backbone(), settings)
        for qs in query_sets:
            written += model_figure3(model, load_queries(qs, settings), gallery, settings, folder)
    return written
