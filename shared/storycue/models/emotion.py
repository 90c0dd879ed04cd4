"""The runtime emotion model: heads over a text encoder and an audio backbone.

:class:`EmotionModel` embeds texts and decoded clips into one emotion space. What it is
made of lives beside it: the checkpoint format and where checkpoints are found in
:mod:`storycue.models.checkpoints`, the space's geometry (head outputs → vectors → scores)
in :mod:`storycue.models.space`, the encoders in :mod:`storycue.models.text` and
:mod:`storycue.models.musicnn`. Loading a checkpoint built for another encoder raises
:class:`ModelMismatchError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storycue.config import Settings
from storycue.errors import InvalidInputError, ModelMismatchError
from storycue.identity import ModelIdentity, file_sha256
from storycue.log import get_logger
from storycue.metrics import record_model_load, time_stage
from storycue.models import space
from storycue.models.base import MODEL_LOAD_LOCK, AudioEmbedding, TextEncoding
from storycue.models.checkpoints import (
    Distance,
    EmotionHeads,
    Role,
    find_checkpoint,
    resolve_checkpoint,
)
from storycue.models.heads import MLPHead
from storycue.models.musicnn import MusicnnBackbone, load_backbone
from storycue.models.text import TextEncoder

log = get_logger(__name__)


@dataclass(frozen=True)
class EmotionReading:
    """How a point of the space reads: valence/arousal (when the space has them) and words."""

    valence: float | None
    arousal: float | None
    mood_words: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"valence": self.valence, "arousal": self.arousal, "mood_words": self.mood_words}


class EmotionModel:
    """Embeds text and audio into one emotion space (heads over frozen encoders).

    Encoders are loaded lazily and shared: the text encoder on the first text call, the
    audio backbone on the first audio call.
    """

    def __init__(
        self,
        heads: EmotionHeads,
        *,
        device: str = "cpu",
        text_batch_size: int = 32,
        text_max_tokens: int = 256,
        checkpoint_sha256: str = "",
        musicnn_weights_dir: Path | None = None,
    ) -> None:
        self.heads = heads
        self.info = heads.info
        self.device = device
        self.checkpoint_sha256 = checkpoint_sha256
        self._text_batch_size = text_batch_size
        self._text_max_tokens = text_max_tokens
        self._musicnn_weights_dir = musicnn_weights_dir
        self._lock = threading.Lock()
        self._text_encoder: TextEncoding | None = None
        self._audio_backbone: AudioEmbedding | None = None
        for head in self.heads.heads.values():
            head.to(device).eval()

    @property
    def identity(self) -> ModelIdentity:
        return self.info.identity

    @property
    def distance(self) -> Distance:
        return self.info.distance

    # ---- encoders -------------------------------------------------------------------------
    @property
    def text_encoder(self) -> TextEncoding:
        """The text encoder the model expects, loaded on first use (or the one given to
        :meth:`use_text_encoder`: the same encoder shared, or a batching wrapper of it)."""
        with self._lock:
            if self._text_encoder is None:
                self._text_encoder = TextEncoder(
                    self.info.text_encoder,
                    device=self.device,
                    batch_size=self._text_batch_size,
                    max_tokens=self._text_max_tokens,
                    pooling=self.info.text_pooling,
                )
            return self._text_encoder

    def use_text_encoder(self, encoder: TextEncoding) -> None:
        """Share an already loaded text encoder (it must be the one the model expects)."""
        if encoder.name != self.info.text_encoder:
            raise ModelMismatchError(
                f"model {self.identity.key} expects text encoder {self.info.text_encoder}, "
                f"got {encoder.name}"
            )
        with self._lock:
            self._text_encoder = encoder

    def audio_backbone(self) -> AudioEmbedding:
        """The audio backbone the model was trained on (loaded once per process), or the
        one given to :meth:`use_audio_backbone`."""
        current = self._audio_backbone
        if current is not None:
            return current
        return self.loaded_audio_backbone()

    def loaded_audio_backbone(self) -> MusicnnBackbone:
        """The installed backbone itself, checked to be the version the model expects."""
        bb = load_backbone(
            self.info.audio_backbone, weights_dir=self._musicnn_weights_dir, device=self.device
        )
        if bb.version != self.info.audio_backbone_version:
            raise ModelMismatchError(
                f"model {self.identity.key} was trained on {self.info.audio_backbone} "
                f"{self.info.audio_backbone_version}, but {bb.version} is installed"
            )
        return bb

    def use_audio_backbone(self, backbone: AudioEmbedding | None) -> None:
        """Embed audio through ``backbone`` (a batching wrapper of the loaded one);
        ``None`` goes back to the loaded backbone."""
        with self._lock:
            self._audio_backbone = backbone

    # ---- embedding ------------------------------------------------------------------------
    def project_text_features(self, features: np.ndarray) -> np.ndarray:
        """Space vectors of text-encoder features: the *query* side of a search."""
        out = self._apply(self.heads.text_head, features)
        shift = self.info.va_text_shift
        if shift is not None:
            out = np.clip(out - np.asarray(shift, np.float32)[None, :], 0.0, 1.0)
        return self._to_space(out, role="text")

    def project_audio_features(self, features: np.ndarray) -> np.ndarray:
        """Space vectors of audio-backbone features: the *catalogue* side of a search."""
        return self._to_space(self._apply(self.heads.audio_head, features), role="audio")

    def _to_space(self, head_out: np.ndarray, *, role: Role) -> np.ndarray:
        return space.to_space(self.info, head_out, role=role)

    def from_va(self, va: np.ndarray, *, role: Role = "text") -> np.ndarray:
        """Space vectors of (valence, arousal) points ``(N, 2)`` in [0, 1], e.g. a mood a
        user asks for (``role="text"``: a query) or a place in the catalogue
        (``role="audio"``); the inverse of :meth:`va_coordinates`."""
        return space.from_va(self.info, va, role=role)

    def va_coordinates(self, vectors: np.ndarray) -> np.ndarray:
        """(valence, arousal) in [0, 1] of space vectors ``(N, d)`` (see
        :func:`storycue.models.space.va_coordinates`)."""
        return space.va_coordinates(self.info, vectors)

    @property
    def mood_space_positions(self) -> np.ndarray:
        """The mood words' positions as space vectors (the checkpoint stores head outputs)."""
        pos = self.heads.mood_positions
        if pos.size == 0:
            return pos
        return self._to_space(np.asarray(pos, np.float32), role="audio")

    def audio_input(self, backbone_features: dict[str, np.ndarray]) -> np.ndarray:
        """Concatenate the backbone feature keys this model's audio head reads."""
        missing = [k for k in self.info.audio_features if k not in backbone_features]
        if missing:
            raise ModelMismatchError(f"backbone features lack {missing}")
        return np.concatenate(
            [
                np.asarray(backbone_features[k], np.float32).reshape(-1)
                for k in self.info.audio_features
            ]
        )

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        feats = self.text_encoder.encode(texts)
        return self.project_text_features(feats)

    def warm_up(self, *, text: bool = True, audio: bool = True) -> dict[str, float]:
        """Load the encoders and run each once, so that a process's first request or task
        does not pay for weight loading and kernel set-up (2–3 s of the first one on CPU:
        ``bench/results/bulk-celery-profile.txt``, ``bench/results/ingest.json``). Returns
        the seconds each side took."""
        took: dict[str, float] = {}
        if text:
            started = time.perf_counter()
            self.embed_text(["warming up the text encoder"])
            took["text"] = round(time.perf_counter() - started, 3)
        if audio:
            started = time.perf_counter()
            self.embed_waveform(warm_up_waveform(WARM_UP_AUDIO_S))
            took["audio"] = round(time.perf_counter() - started, 3)
        log.info("model_warm", model=self.identity.key, **took)
        return took

    def embed_waveform(self, waveform_16k: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Embed one decoded clip; returns (space vector, raw backbone features)."""
        feats = self.audio_backbone().embed_waveform(waveform_16k)
        with time_stage("head"):
            vector = self.project_audio_features(self.audio_input(feats)[None, :])[0]
        return vector, feats

    def _apply(self, head: MLPHead, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != head.config.in_dim:
            raise InvalidInputError(
                f"features of shape {x.shape} do not fit a head expecting (N, {head.config.in_dim})"
            )
        with torch.inference_mode():
            out = head(torch.from_numpy(x).to(self.device))
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)

    # ---- reading a point ------------------------------------------------------------------
    def read(self, vector: np.ndarray, n_words: int = 3) -> EmotionReading:
        """Valence and arousal (models that have them) and the ``n_words`` nearest mood
        words (:func:`storycue.models.space.nearest_words`)."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        words = space.nearest_words(self.info, self.heads.mood_positions, v, n_words)
        if self.info.va_axes:
            valence, arousal = self.va_coordinates(v[None, :])[0]
            return EmotionReading(valence=float(valence), arousal=float(arousal), mood_words=words)
        return EmotionReading(valence=None, arousal=None, mood_words=words)

    def score(self, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """Similarity (higher is better) of queries ``(Q, d)`` to gallery ``(G, d)``."""
        return space.score(self.distance, query, gallery)


_models: dict[tuple[object, ...], EmotionModel] = {}
#: Loading a checkpoint reads tensors through torch like every other load: one lock.
_models_lock = MODEL_LOAD_LOCK


def load_emotion_model(
    name_or_path: str,
    *,
    device: str = "cpu",
    dirs: Sequence[Path] | Path | None = None,
    text_batch_size: int = 32,
    text_max_tokens: int = 256,
    musicnn_weights_dir: Path | None = None,
) -> EmotionModel:
    """Load a shipped or local emotion model (found in ``dirs``, see
    :func:`storycue.models.checkpoints.resolve_checkpoint`), once per process for the same
    file (path, modification time, size) and runtime options."""
    path = resolve_checkpoint(name_or_path, dirs)
    stat = path.stat()
    key = (
        str(path.resolve()),
        stat.st_mtime_ns,
        stat.st_size,
        device,
        text_batch_size,
        text_max_tokens,
        str(musicnn_weights_dir),
    )
    with _models_lock:
        model = _models.get(key)
        if model is None:
            start = time.perf_counter()
            model = EmotionModel(
                EmotionHeads.load(path),
                device=device,
                text_batch_size=text_batch_size,
                text_max_tokens=text_max_tokens,
                checkpoint_sha256=file_sha256(path),
                musicnn_weights_dir=musicnn_weights_dir,
            )
            _models[key] = model
            record_model_load("heads", model.identity.key, time.perf_counter() - start)
        return model


def load_configured_model(
    settings: Settings, name_or_path: str | Path | None = None
) -> EmotionModel:
    """:func:`load_emotion_model` of ``name_or_path`` (default ``settings.emotion_model``),
    found in every model folder of ``settings``, with its device and batch options."""
    return load_emotion_model(
        str(find_checkpoint(str(name_or_path or settings.emotion_model), settings)),
        device=settings.torch_device(),
        text_batch_size=settings.batch.text,
        text_max_tokens=settings.text_max_tokens,
        musicnn_weights_dir=settings.musicnn_weights_dir,
    )


#: Length of the synthetic clip :meth:`EmotionModel.warm_up` embeds (a typical excerpt).
WARM_UP_AUDIO_S = 30.0


def warm_up_waveform(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """A quiet, deterministic, non-silent mono waveform (a chord under light noise)."""
    t = np.arange(int(seconds * sample_rate), dtype=np.float32) / sample_rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3.0
    noise = np.random.default_rng(0).standard_normal(t.size).astype(np.float32)
    return np.asarray(0.1 * tone + 0.01 * noise, dtype=np.float32)
