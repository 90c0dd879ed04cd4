"""The emotion-model checkpoint: its format, and where checkpoints and encoder deltas are found.

A checkpoint is one ``.safetensors`` file holding the text and audio heads and, in its
metadata (:class:`CheckpointInfo`), everything that identifies it: model name, version,
embedding dimension, family, distance, the encoders it expects, the training data and
split, and its metrics. Reading a file that is not such a checkpoint raises
:class:`ModelNotFoundError`; metadata of another format, :class:`ModelMismatchError`.

Every folder storycue searches for models is decided here, once:
:func:`model_search_dirs` (checkpoints: the shipped ``weights`` folder, ``model_dir``,
``<home>/models``), :func:`encoder_search_dirs` (fine-tuned encoder deltas: the
``encoders`` folder of each) and :func:`trained_models_dir` (where training saves).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator
from safetensors.torch import load_file, save_file

from storycue.config import Settings
from storycue.errors import ModelMismatchError, ModelNotFoundError, NotFoundError
from storycue.identity import ModelIdentity, file_sha256
from storycue.log import get_logger
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


def mood_vocabulary() -> list[str]:
    """storycue's built-in list of mood words (see ``resources/mood_words.txt``)."""
    text = resources.files("storycue").joinpath("resources/mood_words.txt").read_text("utf-8")
    return [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]


# ---- where models are found ----------------------------------------------------------------
def shipped_models_dir() -> Path:
    """The checkpoints (and ``encoders/`` deltas) shipped inside the package."""
    return Path(str(resources.files("storycue").joinpath("weights")))


def trained_models_dir(settings: Settings) -> Path:
    """Where training saves checkpoints: ``model_dir``, else ``<home>/models``."""
    return Path(settings.model_dir or settings.home / "models")


def trained_checkpoint_path(settings: Settings, name: str, version: str) -> Path:
    """Where a trained ``name@version`` is saved unless told otherwise."""
    return trained_models_dir(settings) / f"{name}-{version}.safetensors"


def model_search_dirs(settings: Settings) -> list[Path]:
    """Folders searched for checkpoints, first match wins: the shipped ones, ``model_dir``
    and ``<home>/models`` (where training jobs save)."""
    dirs = [shipped_models_dir(), *(d for d in (settings.model_dir, settings.home / "models") if d)]
    return list(dict.fromkeys(Path(d) for d in dirs))


def encoder_search_dirs(settings: Settings) -> list[Path]:
    """Folders searched for fine-tuned encoder deltas: ``encoders/`` of each model folder."""
    return [d / "encoders" for d in model_search_dirs(settings)]


def list_checkpoints(dirs: Sequence[Path] | Path | None = None) -> list[Path]:
    """Every ``.safetensors`` file of ``dirs`` (default: the shipped folder only), each
    folder's files sorted, in the folders' order, without repeating a file."""
    if dirs is None:
        folders = [shipped_models_dir()]
    elif isinstance(dirs, Path):
        folders = [shipped_models_dir(), dirs]
    else:
        folders = list(dirs)
    found: dict[Path, Path] = {}
    for d in folders:
        if d.is_dir():
            for path in sorted(d.glob("*.safetensors")):
                found.setdefault(path.resolve(), path)
    return list(found.values())


def find_checkpoint(name_or_path: str, settings: Settings) -> Path:
    """:func:`resolve_checkpoint` over :func:`model_search_dirs` of ``settings``."""
    return resolve_checkpoint(name_or_path, model_search_dirs(settings))


def resolve_checkpoint(name_or_path: str, dirs: Sequence[Path] | Path | None = None) -> Path:
    """Find a checkpoint by path, by file stem, or by model name (newest version wins) in
    ``dirs`` (see :func:`list_checkpoints`; :func:`find_checkpoint` searches them all)."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise ModelNotFoundError(f"no checkpoint file at {path}")
        return path
    candidates = list_checkpoints(dirs)
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


def model_summary(info: CheckpointInfo) -> dict[str, Any]:
    """The checkpoint's metadata as JSON-ready values (without the long mood-word list)."""
    summary: dict[str, Any] = json.loads(info.model_dump_json(exclude={"mood_words"}))
    return summary


# ---- the models a process can load -------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """An emotion-model checkpoint available to this process."""

    path: Path
    info: CheckpointInfo


def available_models(settings: Settings) -> list[ModelEntry]:
    """Every readable checkpoint of :func:`model_search_dirs` (shipped, ``model_dir``,
    ``<home>/models``)."""
    out: list[ModelEntry] = []
    for path in list_checkpoints(model_search_dirs(settings)):
        try:
            out.append(ModelEntry(path=path, info=checkpoint_info(path)))
        except (ModelNotFoundError, ValueError) as exc:
            log.warning("unreadable checkpoint skipped", path=str(path), error=str(exc))
    out.sort(key=lambda e: (e.info.identity.name, e.info.identity.version))
    return out


def find_model(settings: Settings, name: str, version: str) -> ModelEntry:
    """The checkpoint of ``name@version``, or :class:`NotFoundError`."""
    for entry in available_models(settings):
        ident = entry.info.identity
        if ident.name == name and ident.version == version:
            return entry
    raise NotFoundError(
        f"model {name}@{version} is not available", detail={"name": name, "version": version}
    )
