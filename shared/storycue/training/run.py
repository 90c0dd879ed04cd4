"""One entry point for training any family: the CLI (``storycue train``) and the training
job (``storycue.jobs.tasks.run_train``) both call :func:`train_model`.

Every family, ``va-regression`` included, trains through its :class:`Family` on a
:class:`FeatureBank` of cached frozen-encoder features, with the family's default
configuration (the one the shipped checkpoints were trained with) unless an option
overrides it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from storycue.config import Settings
from storycue.data.textsets import check_text_sources
from storycue.errors import InvalidInputError
from storycue.models.checkpoints import EmotionHeads
from storycue.models.features import feature_cache_dir

#: Short names accepted for the families.
FAMILY_ALIASES = {"va": "va-regression"}
MUSIC_TARGETS = ("blend", "quadrant", "tags")
VAScoring = Literal["quadrants", "circumplex", "euclid", "proximity"]
VA_SCORINGS: tuple[VAScoring, ...] = ("quadrants", "circumplex", "euclid", "proximity")
LabelTarget = Literal["position", "side"]
LABEL_TARGETS: tuple[LabelTarget, ...] = ("position", "side")
RatedFit = Literal["position", "affine"]
RATED_FITS: tuple[RatedFit, ...] = ("position", "affine")


@dataclass(frozen=True)
class TrainOptions:
    """What one training run may override; ``None`` keeps the family's default."""

    family: str
    name: str | None = None
    version: str = "1.0.0"
    seed: int = 0
    max_epochs: int | None = None
    text_sources: Sequence[str] | None = None
    music_target: str | None = None
    #: VA family: ``quadrants``, ``circumplex``, ``euclid`` or ``proximity`` retrieval score.
    va_scoring: str | None = None
    audio_backbone: str | None = None
    #: A hub id, local folder or fine-tuned encoder (``<base>+ft-<digest>``).
    text_encoder: str | None = None
    #: VA family: weight of the proximity term (``va_scoring="proximity"``).
    va_proximity: float | None = None
    #: VA family: weight and stretch of EmoBank's ratings in the text head's regression.
    emobank_weight: float | None = None
    passage_weight: float | None = None
    #: VA family: weight of the lexicon's words (text source ``nrc-words``).
    word_weight: float | None = None
    emobank_stretch: float | None = None
    #: VA family: weight of the labelled texts' arousal targets against their valence.
    label_arousal_weight: float | None = None
    #: VA family: ``position`` or ``side`` (what a labelled text's NRC position teaches).
    label_target: str | None = None
    #: VA family: ``position`` or ``affine`` (what EmoBank's ratings teach the text head).
    rated_fit: str | None = None

    @property
    def family_name(self) -> str:
        return FAMILY_ALIASES.get(self.family, self.family)


def training_encoder(settings: Settings, options: TrainOptions) -> Any:
    """The text encoder a training run reads its features with: ``options.text_encoder``
    (a fine-tuned delta, say) or the configured one, on the configured device."""
    from storycue.models.text import TextEncoder

    return TextEncoder(
        options.text_encoder or settings.text_encoder,
        device=settings.torch_device(),
        batch_size=settings.batch.text,
        max_tokens=settings.text_max_tokens,
    )


def training_backbone(settings: Settings, options: TrainOptions) -> Any:
    """The audio backbone a training run reads its features with (as
    :func:`training_encoder`)."""
    from storycue.models.musicnn import load_backbone

    return load_backbone(
        options.audio_backbone or settings.audio_backbone,
        weights_dir=settings.musicnn_weights_dir,
        device=settings.torch_device(),
    )


def _va_choice(family: str, flag: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` of the VA-family option ``--flag``, or a clear error for another family or
    a value outside ``allowed``."""
    if family != "va-regression":
        raise InvalidInputError(f"--{flag} applies to the va-regression family only")
    if value not in allowed:
        raise InvalidInputError(f"--{flag} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def train_model(
    settings: Settings,
    options: TrainOptions,
    *,
    text_encoder: Any = None,
    backbone: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EmotionHeads:
    """Train ``options.family`` on the datasets under ``settings.data_dir``.

    The encoders default to the configured ones (``options.text_encoder`` or
    ``settings.text_encoder``, and
    ``options.audio_backbone`` or ``settings.audio_backbone``); features are cached under
    ``<home>/cache/features`` so a second run only trains the heads.
    """
    from storycue.data.textsets import DEFAULT_TEXT_SOURCES
    from storycue.training.families import build_feature_bank, get_family

    fam = get_family(options.family_name)
    cfg = replace(
        fam.default_config(),
        name=options.name or fam.name,
        version=options.version,
        seed=options.seed,
    )
    if options.max_epochs is not None:
        if options.max_epochs < 1:
            raise InvalidInputError("max_epochs must be at least 1")
        cfg = replace(cfg, max_epochs=options.max_epochs)
    if options.text_sources is not None:
        cfg = replace(cfg, text_sources=check_text_sources(options.text_sources))
    if options.music_target is not None:
        if fam.name != "va-regression":
            raise InvalidInputError("--music-target applies to the va-regression family only")
        if options.music_target not in MUSIC_TARGETS:
            raise InvalidInputError("music target must be blend, quadrant or tags")
        cfg = replace(
            cfg,
            va_music_target=cast(Literal["quadrant", "tags", "blend"], options.music_target),
        )
    if options.va_scoring is not None:
        scoring = cast(
            VAScoring, _va_choice(fam.name, "va-scoring", options.va_scoring, VA_SCORINGS)
        )
        cfg = replace(cfg, va_scoring=scoring)
    for opt, value in (
        ("va_proximity", options.va_proximity),
        ("emobank_weight", options.emobank_weight),
        ("passage_weight", options.passage_weight),
        ("word_weight", options.word_weight),
        ("emobank_stretch", options.emobank_stretch),
        ("label_arousal_weight", options.label_arousal_weight),
    ):
        if value is None:
            continue
        if fam.name != "va-regression":
            raise InvalidInputError(f"--{opt.replace('_', '-')} applies to va-regression only")
        if not value > 0:
            raise InvalidInputError(f"{opt} must be > 0, got {value}")
    if options.va_proximity is not None:
        cfg = replace(cfg, va_proximity=float(options.va_proximity))
    if options.emobank_weight is not None:
        cfg = replace(cfg, emobank_weight=float(options.emobank_weight))
    if options.passage_weight is not None:
        cfg = replace(cfg, passage_weight=float(options.passage_weight))
    if options.word_weight is not None:
        if "nrc-words" not in cfg.text_sources:
            raise InvalidInputError("--word-weight needs the nrc-words text source")
        cfg = replace(cfg, word_weight=float(options.word_weight))
    if options.emobank_stretch is not None:
        cfg = replace(cfg, emobank_stretch=float(options.emobank_stretch))
    if options.label_arousal_weight is not None:
        cfg = replace(cfg, label_arousal_weight=float(options.label_arousal_weight))
    if options.label_target is not None:
        target = _va_choice(fam.name, "label-target", options.label_target, LABEL_TARGETS)
        cfg = replace(cfg, label_target=cast(LabelTarget, target))
    if options.rated_fit is not None:
        fit = _va_choice(fam.name, "rated-fit", options.rated_fit, RATED_FITS)
        cfg = replace(cfg, rated_fit=cast(RatedFit, fit))
    if options.va_proximity is not None and cfg.va_scoring != "proximity":
        raise InvalidInputError("--va-proximity needs --va-scoring proximity")
    if text_encoder is None:
        text_encoder = training_encoder(settings, options)
    if backbone is None:
        backbone = training_backbone(settings, options)
    cache = feature_cache_dir(settings)
    # The bank holds the default sources (their caches are shared by every run) and any
    # other source the configuration asks for; the family trains on cfg.text_sources.
    extra = [s for s in cfg.text_sources if s not in DEFAULT_TEXT_SOURCES]
    bank = build_feature_bank(
        settings,
        text_encoder,
        backbone,
        cache,
        text_sources=(*DEFAULT_TEXT_SOURCES, *extra),
        progress=progress,
    )
    return fam.train(bank, cfg)
