"""Frozen-backbone features, computed once and cached on disk.

Heads train on features of frozen encoders, so the encoders run once per clip and text;
the cache key holds the encoder identity and a hash of the inputs, so a different encoder
or input set never reuses stale features.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from storycue.audio.decode import load_audio
from storycue.config import Settings
from storycue.data.fourq import FourQRecord
from storycue.data.splits import FourQSplit
from storycue.errors import AudioDecodeError
from storycue.log import get_logger

log = get_logger(__name__)
Progress = Callable[[int, int], None]


def _digest(items: Sequence[str]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(it.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def text_features(
    encoder: Any, texts: Sequence[str], cache_dir: Path | None, *, tag: str = "texts"
) -> np.ndarray:
    """Encoder features of ``texts`` ``(N, dim)``, cached under ``cache_dir``."""
    path = None
    if cache_dir is not None:
        safe = encoder.name.replace("/", "_")
        path = cache_dir / f"text-{safe}-{encoder.pooling}-{tag}-{_digest(texts)}.npy"
        if path.is_file():
            return np.asarray(np.load(path), dtype=np.float32)
    feats = np.asarray(encoder.encode(list(texts), allow_truncation=True), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, feats)
    return feats


def audio_cache_path(backbone: Any, paths: Sequence[Path], cache_dir: Path, tag: str) -> Path:
    """Where :func:`audio_features` caches the features of ``paths`` for ``backbone``."""
    key = _digest([str(p) for p in paths] + [backbone.name, backbone.version])
    return cache_dir / f"audio-{backbone.name}-{tag}-{key}.npz"


def audio_features(
    backbone: Any,
    paths: Sequence[Path],
    cache_dir: Path | None,
    *,
    tag: str = "clips",
    progress: Progress | None = None,
    decode_workers: int = 2,
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Backbone features pooled per clip, as ``{key: (N, dim)}`` plus indices that failed.

    Decoding and resampling run in a thread pool ahead of the backbone, so the two
    overlap. Clips that cannot be decoded are skipped and reported; their rows are NaN.
    """
    cache_path = None
    if cache_dir is not None:
        cache_path = audio_cache_path(backbone, paths, cache_dir, tag)
        if cache_path.is_file():
            with np.load(cache_path) as z:
                cached_failed = [int(i) for i in json.loads(str(z["__failed__"]))]
                return {k: z[k] for k in z.files if k != "__failed__"}, cached_failed
    dims = backbone.feature_dims
    out = {k: np.full((len(paths), d), np.nan, dtype=np.float32) for k, d in dims.items()}
    failed: list[int] = []
    with ThreadPoolExecutor(max_workers=max(1, decode_workers)) as pool:
        # Bounded look-ahead: at most 2×workers decoded clips wait in memory.
        window = 2 * max(1, decode_workers)
        futures = {i: pool.submit(load_audio, p) for i, p in enumerate(paths[:window])}
        for i in range(len(paths)):
            nxt = i + window
            if nxt < len(paths):
                futures[nxt] = pool.submit(load_audio, paths[nxt])
            try:
                decoded = futures.pop(i).result()
            except AudioDecodeError as exc:
                log.warning("clip_skipped", path=str(paths[i]), reason=exc.message)
                failed.append(i)
                continue
            feats = backbone.embed_waveform(decoded.waveform)
            for k in out:
                out[k][i] = np.asarray(feats[k], dtype=np.float32).reshape(-1)
            if progress is not None:
                progress(i + 1, len(paths))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp.npz")
        arrays: dict[str, Any] = {"__failed__": np.array(json.dumps(failed)), **out}
        np.savez(tmp, **arrays)
        tmp.replace(cache_path)
    return out, failed


def feature_cache_dir(settings: Settings) -> Path:
    """Where features are cached between runs (``<home>/cache/features``)."""
    return settings.home / "cache" / "features"


def _fourq_ordered(split: FourQSplit) -> list[FourQRecord]:
    """Every clip of the split, sorted by song id: the list cached as one feature file."""
    return sorted([*split.train, *split.validation, *split.test], key=lambda r: r.song_id)


def fourq_cache_path(split: FourQSplit, backbone: Any, cache_dir: Path) -> Path:
    """Where :func:`fourq_features` caches the features of ``split`` for ``backbone``."""
    return audio_cache_path(
        backbone, [r.audio_path for r in _fourq_ordered(split)], cache_dir, "4q-all"
    )


def fourq_features(
    split: FourQSplit,
    backbone: Any,
    cache_dir: Path | None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Backbone features of every 4Q clip (one cache for all parts), sliced by part."""
    ordered = _fourq_ordered(split)

    def _prog(done: int, total: int) -> None:
        if progress is not None:
            progress("4Q audio features", done, total)

    raw, failed = audio_features(
        backbone, [r.audio_path for r in ordered], cache_dir, tag="4q-all", progress=_prog
    )
    if failed:
        log.warning("clips_failed", count=len(failed))
    row = {r.song_id: i for i, r in enumerate(ordered)}
    return {
        part: {k: v[[row[r.song_id] for r in split.part(part)]] for k, v in raw.items()}
        for part in ("train", "validation", "test")
    }
