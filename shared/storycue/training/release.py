"""Making a release: fine-tune (optionally) → train → score → save → model card.

One orchestration for ``storycue train``, ``storycue calibrate`` and the training job
(:func:`storycue.jobs.tasks.run_train`), so that a model trained from the command line and
one trained through the gateway are made the same way; they differ only in the options
they pass (the job neither fine-tunes nor reads the test parts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from storycue.config import Settings
from storycue.errors import InvalidInputError
from storycue.evaluation.release import release_metrics
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.models.checkpoints import EmotionHeads, trained_checkpoint_path
from storycue.models.emotion import EmotionModel
from storycue.models.finetuned import is_finetuned_name
from storycue.training.modelcard import write_model_card
from storycue.training.run import TrainOptions, train_model, training_backbone, training_encoder

log = get_logger(__name__)

Finetune = Literal["none", "text", "audio", "both"]
FINETUNE_CHOICES: tuple[Finetune, ...] = ("none", "text", "audio", "both")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TunedEncoder:
    """An encoder fine-tuned on the way to a release, and where its delta was saved."""

    kind: Literal["text", "audio"]
    name: str
    path: Path
    result: Any


@dataclass(frozen=True)
class Release:
    """A saved checkpoint with its model card."""

    heads: EmotionHeads
    path: Path
    sha256: str
    card: Path
    tuned: list[TunedEncoder] = field(default_factory=list)

    @property
    def identity(self) -> ModelIdentity:
        return self.heads.info.identity


def finetune_encoders(
    settings: Settings,
    options: TrainOptions,
    finetune: Finetune,
    progress: Progress | None = None,
) -> tuple[TrainOptions, list[TunedEncoder]]:
    """Fine-tune the encoders ``finetune`` names with ``storycue finetune``'s defaults;
    the options naming the tuned encoders, and what was tuned."""
    tuned: list[TunedEncoder] = []
    if finetune == "none":
        return options, tuned
    from storycue.training.finetune import (
        AudioFinetuneConfig,
        TextFinetuneConfig,
        run_audio_finetuning,
        run_text_finetuning,
    )

    if finetune in ("text", "both"):
        text, path = run_text_finetuning(
            settings, TextFinetuneConfig(seed=options.seed), progress=progress
        )
        tuned.append(TunedEncoder("text", text.delta.name, path, text))
        options = replace(options, text_encoder=text.delta.name)
    if finetune in ("audio", "both"):
        audio, path = run_audio_finetuning(
            settings,
            AudioFinetuneConfig(seed=options.seed),
            backbone=options.audio_backbone,
            progress=progress,
        )
        tuned.append(TunedEncoder("audio", audio.delta.name, path, audio))
        options = replace(options, audio_backbone=audio.delta.name)
    return options, tuned


def check_finetune(finetune: str, options: TrainOptions) -> Finetune:
    """``finetune`` checked against the options (a fine-tuned encoder is not tuned again)."""
    if finetune not in FINETUNE_CHOICES:
        raise InvalidInputError("--finetune must be none, text, audio or both")
    if finetune in ("text", "both") and options.text_encoder:
        raise InvalidInputError("give --text-encoder or --finetune text, not both")
    backbone = options.audio_backbone
    if finetune in ("audio", "both") and backbone and is_finetuned_name(backbone):
        raise InvalidInputError(f"{backbone} is already fine-tuned")
    return finetune


def check_scoring(evaluate: bool, test: bool) -> None:
    """The test parts are scored only beside the validation parts (``--test`` needs
    ``--evaluate``)."""
    if test and not evaluate:
        raise InvalidInputError("scoring the test parts (--test) needs --evaluate")


def save_release(
    settings: Settings,
    heads: EmotionHeads,
    *,
    encoder: Any,
    backbone: Any,
    evaluate: bool,
    test: bool = False,
    output: Path | None = None,
    tuned: list[TunedEncoder] | None = None,
) -> Release:
    """Score a new release when asked (``evaluate``: the validation parts; with ``test`` the
    test parts too, its one look at them; the metrics go into the checkpoint), save its
    checkpoint and write its model card."""
    check_scoring(evaluate, test)
    if evaluate:
        model = EmotionModel(heads, device=settings.torch_device())
        model.use_text_encoder(encoder)
        heads.info.metrics = release_metrics(model, backbone, settings, test=test)
    ident = heads.info.identity
    path = output or trained_checkpoint_path(settings, ident.name, ident.version)
    sha = str(heads.save(path))
    card = write_model_card(heads.info, path, sha)
    log.info("release_saved", model=ident.key, path=str(path), evaluated=evaluate, test=test)
    return Release(heads=heads, path=path, sha256=sha, card=card, tuned=list(tuned or []))


def train_release(
    settings: Settings,
    options: TrainOptions,
    *,
    finetune: str = "none",
    evaluate: bool = True,
    test: bool = False,
    output: Path | None = None,
    progress: Progress | None = None,
    keep: Callable[[EmotionHeads], bool] | None = None,
) -> Release | None:
    """Fine-tune (``finetune``), train ``options.family``, score (``evaluate``: validation
    parts; ``test``: the test parts too), save and
    write the model card. ``keep`` is asked with the trained heads before anything is
    saved; when it says no (a cancelled job) nothing is saved and the answer is ``None``."""
    check_scoring(evaluate, test)  # before any training, not after it
    options, tuned = finetune_encoders(
        settings, options, check_finetune(finetune, options), progress
    )
    encoder = training_encoder(settings, options)
    backbone = training_backbone(settings, options)
    heads = train_model(
        settings, options, text_encoder=encoder, backbone=backbone, progress=progress
    )
    if keep is not None and not keep(heads):
        return None
    return save_release(
        settings,
        heads,
        encoder=encoder,
        backbone=backbone,
        evaluate=evaluate,
        test=test,
        output=output,
        tuned=tuned,
    )
