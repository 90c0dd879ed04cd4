"""Calibrating the text side of a valence-arousal model on rated prose.

A head trained on labelled texts (ISEAR, GoEmotions: each label placed at its NRC VAD
position) and on EmoBank's ratings learns the labels' arousal, which is high for most
emotion words; prose then reads more aroused than people rate it (on EmoBank dev the
shipped 4.0.0 head read joined fiction scenes about .15 above their rating), so calm
scenes fall on the wrong side of the neutral point and are cued with excited music.

:func:`fit_text_shift` measures that offset on EmoBank *dev* (sentences of every genre and
passages of 2, 3, 4 and 6 consecutive sentences of one document: the lengths a story's
scenes have) as the mean of reading − rating per axis, the rating stretched about the
neutral point as the head was trained (``emobank_stretch``), and :func:`calibrated` writes
it into a new version of the checkpoint (``CheckpointInfo.va_text_shift``). A shift changes
no correlation with any rating (it moves every text by the same amount); it changes which
side of the neutral point a passage falls on and so which quadrant's music it meets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from storycue.config import Settings
from storycue.data.emobank import load_emobank, passage_windows, rescale
from storycue.data.mappings import VA_CENTRE
from storycue.data.textsets import PASSAGE_SIZES
from storycue.errors import InvalidInputError
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.models.checkpoints import EmotionHeads

log = get_logger(__name__)


@dataclass(frozen=True)
class ShiftFit:
    """The fitted shift and what it was fitted on."""

    shift: tuple[float, float]
    fit_on: FitOn
    method: Method
    n_sentences: int
    n_passages: int
    stretch: float
    #: mean reading − stretched rating before the shift, by set
    bias_before: dict[str, tuple[float, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "shift": [round(x, 4) for x in self.shift],
            "fitted_on": (
                "EmoBank dev: sentences of every genre and passages of "
                if self.fit_on == "all"
                else "EmoBank dev: passages of "
            )
            + f"{', '.join(map(str, PASSAGE_SIZES))} consecutive sentences of one document",
            "method": self.method,
            "n_sentences": self.n_sentences,
            "n_passages": self.n_passages,
            "emobank_stretch": self.stretch,
            "bias_before": {k: [round(x, 4) for x in v] for k, v in self.bias_before.items()},
        }


def _stretch(model: Any) -> float:
    cfg = model.info.training.get("config", {}) if isinstance(model.info.training, dict) else {}
    return float(cfg.get("emobank_stretch", 1.0) or 1.0)


FitOn = Literal["all", "passages"]
#: ``mean``: the mean of reading − (stretched) rating; ``quantile``: the shift that puts
#: as many texts above the neutral point as people rated above it (rank-matched midpoint:
#: what decides the side of a scene, whatever the scales of readings and ratings).
Method = Literal["mean", "quantile"]


def fit_text_shift(
    model: Any,
    settings: Settings,
    *,
    axes: str = "va",
    fit_on: FitOn = "all",
    method: Method = "mean",
) -> ShiftFit:
    """Mean offset of ``model``'s text readings from EmoBank dev ratings (see module doc).

    ``axes`` picks the axes to calibrate (``"va"``, ``"a"`` or ``"v"``); the others get 0.
    ``fit_on``: ``all`` (sentences and passages pooled) or ``passages`` only (what a
    story's scenes look like; the sentences' bias is still measured and recorded).
    The model must be uncalibrated (its ``va_text_shift`` unset), so a shift is never
    fitted on top of another."""
    from storycue.evaluation.continuous import ModelReader, read_passages

    if not model.info.va_axes or model.info.head_dim != 2:
        raise InvalidInputError(f"model {model.identity.key} is not a 2-d valence-arousal model")
    if model.info.va_text_shift is not None:
        raise InvalidInputError(f"model {model.identity.key} is already calibrated")
    if axes not in ("va", "a", "v"):
        raise InvalidInputError(f"axes must be 'va', 'a' or 'v', got {axes!r}")
    if fit_on not in ("all", "passages"):
        raise InvalidInputError(f"fit_on must be 'all' or 'passages', got {fit_on!r}")
    if method not in ("mean", "quantile"):
        raise InvalidInputError(f"method must be 'mean' or 'quantile', got {method!r}")
    rows = load_emobank("validation", settings=settings)
    if len(rows) < 50:
        raise InvalidInputError(f"EmoBank dev has only {len(rows)} sentences: too few to fit")
    sentences = (
        [r.text for r in rows],
        np.asarray([(rescale(r.valence), rescale(r.arousal)) for r in rows], np.float64),
    )
    windows = passage_windows(rows, PASSAGE_SIZES)
    passages = ([t for t, _, _ in windows], np.asarray([(v, a) for _, v, a in windows]))
    stretch = _stretch(model)
    reader = ModelReader(model, settings)
    enc = model.text_encoder
    diffs: list[np.ndarray] = []
    reads: list[np.ndarray] = []
    rates: list[np.ndarray] = []
    bias: dict[str, tuple[float, float]] = {}
    for name, (texts, rated) in (("sentences", sentences), ("passages", passages)):
        target = np.clip(VA_CENTRE + stretch * (rated - VA_CENTRE), 0.0, 1.0)
        read = read_passages(reader, texts, enc.count_tokens, enc.max_tokens)
        d = read - target
        if fit_on == "all" or name == "passages":
            diffs.append(d)
            reads.append(read)
            rates.append(rated)
        bias[name] = (float(d[:, 0].mean()), float(d[:, 1].mean()))
    if method == "mean":
        per_axis = np.concatenate(diffs).mean(axis=0)
    else:
        read_all, rated_all = np.concatenate(reads), np.concatenate(rates)
        above = (rated_all > VA_CENTRE).mean(axis=0)  # share rated above the neutral point
        per_axis = np.array(
            [np.quantile(read_all[:, k], 1.0 - above[k]) - VA_CENTRE for k in range(2)]
        )
    shift = (
        float(per_axis[0]) if "v" in axes else 0.0,
        float(per_axis[1]) if "a" in axes else 0.0,
    )
    fit = ShiftFit(
        shift=shift,
        fit_on=fit_on,
        method=method,
        n_sentences=len(sentences[0]),
        n_passages=len(passages[0]),
        stretch=stretch,
        bias_before=bias,
    )
    log.info("text_shift_fitted", model=model.identity.key, **fit.to_dict())
    return fit


def calibrated(heads: EmotionHeads, fit: ShiftFit, version: str) -> EmotionHeads:
    """A new version of ``heads`` with the text-side shift: same heads, the mood words'
    positions (text-head outputs) shifted like every text, the fit recorded in
    ``training["calibration"]``."""
    info = heads.info
    if version == info.identity.version:
        raise InvalidInputError(f"a calibrated model needs a new version, not {version!r}")
    identity = ModelIdentity(name=info.identity.name, version=version, dim=info.identity.dim)
    training = dict(info.training)
    training["calibration"] = fit.to_dict() | {"from": info.identity.key}
    new_info = info.model_copy(
        update={"identity": identity, "va_text_shift": fit.shift, "training": training}
    )
    pos = np.asarray(heads.mood_positions, np.float32)
    if pos.size:
        pos = pos.copy()
        pos[:, :2] = np.clip(pos[:, :2] - np.asarray(fit.shift, np.float32), 0.0, 1.0)
    return replace(heads, info=new_info, mood_positions=pos)
