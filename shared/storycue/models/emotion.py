"""Emotion-space models: checkpoints and the runtime that embeds text and audio.

A checkpoint is one ``.safetensors`` file holding the text and audio heads and, in its
metadata, everything that identifies it: model name, version, embedding dimension, family,
distance, the encoders it expects, the training data and split, and its metrics. Loading a
checkpoint built for another encoder raises :class:`ModelMismatchError`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator
from safetensors.torch import load_file, save_file

from storycue.errors import InvalidInputError, ModelMismatchError, ModelNotFoundError
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.metrics import record_model_load, time_stage
from storycue.models.base import MODEL_LOAD_LOCK
from storycue.models.heads import HeadConfig, MLPHead

log = get_logger(__name__)

Distance = Literal["euclid", "cosine", "dot"]
#: Which side of a search a vector is for: texts query, clips are the catalogue.
Role = Literal["text", "audio"]
CHECKPOINT_FORMAT = "storycue-emotion-checkpoint/1"


class CheckpointInfo(BaseModel):
    """Metadata stored inside every checkpoint."""

    format: str = CHECKPOINT_FORMAT
    identity: ModelIdentity
    family: str
    distance: Distance
    text_encoder: str
    text_pooling: Literal["mean", "cls"] = "mean"
    audio_backbone: str
    audio_backbone_version: str
    audio_features: list[str] = Field(
        description="Backbone feature keys concatenated (in order) as the audio head's input."
    )
    heads: dict[str, HeadConfig] = Field(
        description="Head architectures by role: 'text' and 'audio' embed queries and "
        "tracks; families may add more (e.g. 'tag' for three-branch metric learning)."
    )
    vocabulary: list[str] = Field(
        default_factory=list,
        description="Joint label vocabulary of classifier-based spaces (index = axis).",
    )
    va_axes: bool = Field(
        default=False,
        description="True when the space encodes valence and arousal: its first two axes, "
        "or (va_centre / va_quadrant_sharpness) a map of them that "
        "EmotionModel.va_coordinates() inverts.",
    )
    va_centre: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Circumplex scoring (valence-arousal spaces with distance 'dot'): the "
        "neutral point (c, c) of the heads' [0, 1] valence-arousal outputs. Vectors are the "
        "offsets (valence - c, arousal - c) and texts meet music by their inner product, so a "
        "clip scores by how far it goes in the text's direction around the neutral point (the "
        "angle of Russell's circumplex) rather than by how close it lies to the text's point.",
    )
    va_quadrant_sharpness: float | None = Field(
        default=None,
        gt=0.0,
        description="Soft-quadrant scoring (needs va_centre): vectors are the four soft "
        "memberships of the circumplex quadrants Q1..Q4, products of logistic functions "
        "sigmoid(±k·offset) of each axis with this sharpness k, so the inner product of a "
        "text's and a clip's vectors is the probability that both fall in the same quadrant "
        "when each axis is read with logistic uncertainty of scale 1/k. The space has 4 "
        "dimensions; the heads still output 2 (valence, arousal).",
    )
    va_proximity: float | None = Field(
        default=None,
        gt=0.0,
        description="Quadrants-plus-proximity scoring (needs va_quadrant_sharpness): the "
        "score of a text and a clip is their soft-quadrant agreement minus this weight "
        "times their squared distance in the valence-arousal plane, so clips of the same "
        "quadrant rank by how close they are to the text (a gently sad scene prefers gently "
        "sad music to a violent one). Stored as 8-d vectors with distance 'dot': the four "
        "memberships, sqrt(2·w)·(offsets), and two bias axes that differ by role (texts "
        "[1, -w·|o|²], clips [-w·|o|², 1]), so the inner product is exactly that score.",
    )
    va_text_shift: tuple[float, float] | None = Field(
        default=None,
        description="Calibration of the text side of a valence-arousal model: subtracted "
        "from the text head's (valence, arousal) outputs (then clipped to [0, 1]) before they "
        "become space vectors, so that prose rated neutral by people reads neutral. Fitted on "
        "EmoBank dev (storycue calibrate) as the mean offset of the head's readings from the "
        "ratings; the audio side and the mood words' stored positions are unaffected (the "
        "words are stored already shifted). A shift moves points, so it is part of the "
        "model's identity: a calibrated model is a new version.",
    )
    mood_words: list[str] = Field(default_factory=list)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    licences: dict[str, str] = Field(default_factory=dict)
    created: str = ""

    @model_validator(mode="after")
    def _circumplex_needs_va_dot(self) -> CheckpointInfo:
        if self.va_centre is not None and not (self.va_axes and self.distance == "dot"):
            raise ValueError("va_centre needs va_axes and distance 'dot' (circumplex scoring)")
        if self.va_quadrant_sharpness is not None:
            if self.va_centre is None:
                raise ValueError("va_quadrant_sharpness needs va_centre")
            want = 4 if self.va_proximity is None else 8
            if self.identity.dim != want:
                raise ValueError(
                    f"a soft-quadrant space{' with proximity' if want == 8 else ''} has "
                    f"{want} dimensions"
                )
        elif self.va_proximity is not None:
            raise ValueError("va_proximity needs va_quadrant_sharpness")
        if self.va_text_shift is not None and not (self.va_axes and self.head_dim == 2):
            raise ValueError("va_text_shift needs a 2-d valence-arousal model")
        return self

    @property
    def head_dim(self) -> int:
        """What the text and audio heads output: the space's dimension, or 2 (valence,
        arousal) for a soft-quadrant space, whose 4 axes are computed from them."""
        return 2 if self.va_quadrant_sharpness is not None else self.identity.dim


@dataclass
class EmotionHeads:
    """The trainable part of a model: its heads (by role) and the mood-word positions."""

    info: CheckpointInfo
    heads: dict[str, MLPHead]
    mood_positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __post_init__(self) -> None:
        for role in ("text", "audio"):
            if role not in self.heads:
                raise ModelMismatchError(f"a model needs a {role!r} head")
        for role, head in self.heads.items():
            if self.info.heads.get(role) != head.config:
                raise ModelMismatchError(f"head {role!r} does not match the checkpoint info")

    @property
    def text_head(self) -> MLPHead:
        return self.heads["text"]

    @property
    def audio_head(self) -> MLPHead:
        return self.heads["audio"]

    # ---- persistence ------------------------------------------------------------------
    def save(self, path: Path) -> str:
        """Write the checkpoint; returns its sha256."""
        tensors: dict[str, torch.Tensor] = {}
        for role, head in self.heads.items():
            for k, v in head.state_dict().items():
                tensors[f"{role}.{k}"] = v.detach().cpu().contiguous()
        tensors["mood_positions"] = torch.from_numpy(
            np.ascontiguousarray(self.mood_positions, dtype=np.float32)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"storycue": self.info.model_dump_json()})
        return file_sha256(path)

    @classmethod
    def load(cls, path: Path) -> EmotionHeads:
        if not path.is_file():
            raise ModelNotFoundError(f"no checkpoint at {path}")
        info = _peek(path)
        if info.format != CHECKPOINT_FORMAT:
            raise ModelMismatchError(f"{path}: unsupported checkpoint format {info.format!r}")
        tensors = load_file(str(path))
        heads: dict[str, MLPHead] = {}
        for role, cfg in info.heads.items():
            head = MLPHead(cfg)
            prefix = f"{role}."
            head.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
            heads[role] = head.eval()
        for role in ("text", "audio"):
            if role in heads and heads[role].space_dim != info.head_dim:
                raise ModelMismatchError(
                    f"{path}: {role} head outputs {heads[role].space_dim}-d, the checkpoint "
                    f"says {info.head_dim}-d"
                )
        return cls(info=info, heads=heads, mood_positions=tensors["mood_positions"].numpy())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mood_vocabulary() -> list[str]:
    """storycue's built-in list of mood words (see ``resources/mood_words.txt``)."""
    text = resources.files("storycue").joinpath("resources/mood_words.txt").read_text("utf-8")
    return [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]


# ---- shipped models ---------------------------------------------------------------------
def shipped_models_dir() -> Path:
    return Path(str(resources.files("storycue").joinpath("weights")))


def list_checkpoints(extra_dir: Path | None = None) -> list[Path]:
    dirs = [shipped_models_dir()] + ([extra_dir] if extra_dir else [])
    found: list[Path] = []
    for d in dirs:
        if d.is_dir():
            found.extend(sorted(d.glob("*.safetensors")))
    return found


def resolve_checkpoint(name_or_path: str, extra_dir: Path | None = None) -> Path:
    """Find a checkpoint by path, by file stem, or by model name (newest version wins)."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise ModelNotFoundError(f"no checkpoint file at {path}")
        return path
    candidates = list_checkpoints(extra_dir)
    for c in candidates:
        if c.stem == name_or_path:
            return c
    named = [c for c in candidates if _peek_name(c) == name_or_path]
    if named:
        return sorted(named, key=lambda c: _version_key(_peek_version(c)))[-1]
    known = sorted({_peek_name(c) for c in candidates})
    raise ModelNotFoundError(
        f"unknown emotion model {name_or_path!r}; known: {', '.join(known) or 'none'}"
    )


def _peek(path: Path) -> CheckpointInfo:
    from pydantic import ValidationError
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise ModelNotFoundError(f"{path} is not a readable safetensors file: {exc}") from exc
    if "storycue" not in meta:
        raise ModelNotFoundError(f"{path} is not a storycue checkpoint (no metadata)")
    try:
        return CheckpointInfo.model_validate_json(meta["storycue"])
    except ValidationError as exc:
        raise ModelMismatchError(f"{path}: checkpoint metadata is invalid: {exc}") from exc


def _peek_name(path: Path) -> str:
    return _peek(path).identity.name


def _peek_version(path: Path) -> str:
    return _peek(path).identity.version


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def checkpoint_info(path: Path) -> CheckpointInfo:
    """Read only the metadata of a checkpoint."""
    return _peek(path)


# ---- runtime ------------------------------------------------------------------------------
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
        self._text_encoder: Any = None
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
    def text_encoder(self) -> Any:
        from storycue.models.text import TextEncoder

        with self._lock:
            if self._text_encoder is None:
                enc = TextEncoder(
                    self.info.text_encoder,
                    device=self.device,
                    batch_size=self._text_batch_size,
                    max_tokens=self._text_max_tokens,
                    pooling=self.info.text_pooling,
                )
                self._text_encoder = enc
            return self._text_encoder

    def use_text_encoder(self, encoder: Any) -> None:
        """Share an already loaded text encoder (it must be the one the model expects)."""
        if encoder.name != self.info.text_encoder:
            raise ModelMismatchError(
                f"model {self.identity.key} expects text encoder {self.info.text_encoder}, "
                f"got {encoder.name}"
            )
        with self._lock:
            self._text_encoder = encoder

    def audio_backbone(self) -> Any:
        from storycue.models.musicnn import load_backbone

        bb = load_backbone(
            self.info.audio_backbone, weights_dir=self._musicnn_weights_dir, device=self.device
        )
        if bb.version != self.info.audio_backbone_version:
            raise ModelMismatchError(
                f"model {self.identity.key} was trained on {self.info.audio_backbone} "
                f"{self.info.audio_backbone_version}, but {bb.version} is installed"
            )
        return bb

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
        """Head outputs → space vectors: circumplex models subtract the neutral point;
        soft-quadrant models then map the offsets to the four quadrant memberships;
        proximity models append the scaled offsets and the two role-dependent bias axes
        (see ``CheckpointInfo.va_proximity``). Every other space is the same for both roles."""
        centre, k = self.info.va_centre, self.info.va_quadrant_sharpness
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
        w = self.info.va_proximity
        if w is None:
            return quads.astype(np.float32)
        sq = w * (off[:, :2] ** 2).sum(axis=1, keepdims=True)
        one = np.ones_like(sq)
        bias = np.concatenate([one, -sq] if role == "text" else [-sq, one], axis=1)
        return np.concatenate([quads, np.sqrt(2.0 * w) * off[:, :2], bias], axis=1).astype(
            np.float32
        )

    def from_va(self, va: np.ndarray, *, role: Role = "text") -> np.ndarray:
        """Space vectors of (valence, arousal) points ``(N, 2)`` in [0, 1], e.g. a mood a
        user asks for (``role="text"``: a query) or a place in the catalogue
        (``role="audio"``); the inverse of :meth:`va_coordinates`."""
        if not self.info.va_axes or self.info.head_dim != 2:
            raise ModelMismatchError(
                f"model {self.identity.key} is not a 2-d valence-arousal model"
            )
        x = np.asarray(va, np.float32)
        if x.ndim != 2 or x.shape[1] != 2:
            raise InvalidInputError(f"expected (valence, arousal) rows, got shape {x.shape}")
        if role not in ("text", "audio"):
            raise InvalidInputError(f"role must be 'text' or 'audio', got {role!r}")
        return self._to_space(x, role=role)

    def va_coordinates(self, vectors: np.ndarray) -> np.ndarray:
        """(valence, arousal) in [0, 1] of space vectors ``(N, d)`` of a valence-arousal
        model: the first two axes, plus the neutral point for circumplex models, or the
        inverse of the soft-quadrant map (exact up to float precision within ±8/k of the
        centre; memberships saturate beyond), or the stored offsets of a proximity model."""
        if not self.info.va_axes:
            raise ModelMismatchError(f"model {self.identity.key} has no valence-arousal axes")
        x = np.asarray(vectors, np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.identity.dim:
            raise InvalidInputError(
                f"expected vectors of {self.identity.dim} values, got shape {x.shape}"
            )
        centre, k = self.info.va_centre, self.info.va_quadrant_sharpness
        if centre is None:
            return x[:, :2].astype(np.float32)
        if k is None:
            return (x[:, :2] + centre).astype(np.float32)
        if self.info.va_proximity is not None:  # exact: the scaled offsets are stored
            scale = float(np.sqrt(2.0 * self.info.va_proximity))
            return np.asarray(x[:, 4:6] / scale + centre, np.float32)
        eps = 1e-7
        sv = np.clip(x[:, 0] + x[:, 3], eps, 1 - eps)
        sa = np.clip(x[:, 0] + x[:, 1], eps, 1 - eps)
        va = np.stack([np.log(sv / (1 - sv)), np.log(sa / (1 - sa))], axis=1) / k + centre
        return va.astype(np.float32)

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
        words. Circumplex and soft-quadrant models read words by distance in the
        valence-arousal plane: their inner product would name the most extreme words of the
        point's quadrant rather than the ones that describe it."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        words: list[str] = []
        if self.heads.mood_positions.size and self.info.mood_words:
            if self.info.va_centre is not None:  # stored positions are already VA points
                va = self.va_coordinates(v[None, :])[0]
                d = np.linalg.norm(np.asarray(self.heads.mood_positions)[:, :2] - va, axis=1)
            else:
                pos = self.mood_space_positions
                if self.distance == "cosine":
                    d = -(pos @ (v / max(float(np.linalg.norm(v)), 1e-9)))
                elif self.distance == "dot":
                    d = -(pos @ v)
                else:
                    d = np.linalg.norm(pos - v[None, :], axis=1)
            words = [self.info.mood_words[i] for i in np.argsort(d, kind="stable")[:n_words]]
        if self.info.va_axes:
            valence, arousal = self.va_coordinates(v[None, :])[0]
            return EmotionReading(valence=float(valence), arousal=float(arousal), mood_words=words)
        return EmotionReading(valence=None, arousal=None, mood_words=words)

    def score(self, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """Similarity (higher is better) of queries ``(Q, d)`` to gallery ``(G, d)``."""
        q = np.asarray(query, np.float32)
        g = np.asarray(gallery, np.float32)
        if self.distance == "dot":
            return np.asarray(q @ g.T, np.float32)
        if self.distance == "cosine":
            qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-9)
            gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
            return np.asarray(qn @ gn.T, np.float32)
        d2 = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2.0 * q @ g.T
        return np.asarray(-np.sqrt(np.maximum(d2, 0.0)), np.float32)


_models: dict[tuple[object, ...], EmotionModel] = {}
#: Loading a checkpoint reads tensors through torch like every other load: one lock.
_models_lock = MODEL_LOAD_LOCK


def load_emotion_model(
    name_or_path: str,
    *,
    device: str = "cpu",
    extra_dir: Path | None = None,
    text_batch_size: int = 32,
    text_max_tokens: int = 256,
    musicnn_weights_dir: Path | None = None,
) -> EmotionModel:
    """Load a shipped or local emotion model, once per process for the same file (path,
    modification time, size) and runtime options."""
    path = resolve_checkpoint(name_or_path, extra_dir)
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


def model_summary(info: CheckpointInfo) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(info.model_dump_json(exclude={"mood_words"}))
    return summary


#: Length of the synthetic clip :meth:`EmotionModel.warm_up` embeds (a typical excerpt).
WARM_UP_AUDIO_S = 30.0


def warm_up_waveform(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """A quiet, deterministic, non-silent mono waveform (a chord under light noise)."""
    t = np.arange(int(seconds * sample_rate), dtype=np.float32) / sample_rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3.0
    noise = np.random.default_rng(0).standard_normal(t.size).astype(np.float32)
    return np.asarray(0.1 * tone + 0.01 * noise, dtype=np.float32)
