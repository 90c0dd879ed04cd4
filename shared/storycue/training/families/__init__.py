"""The emotion-space families of the paper behind one interface.

Build a :class:`FeatureBank` once (:func:`build_feature_bank` for the real datasets,
:meth:`FeatureBank.from_arrays` for anything else), then train any family by name::

    family = FAMILIES["metric-3branch"]
    heads = family.train(bank, family.default_config())
    heads.save(path)

Families: ``classification``, ``multihead-classification``, ``va-regression``,
``word-regression``, ``metric-2branch``, ``metric-3branch``.
"""

from storycue.data.textsets import DEFAULT_TEXT_SOURCES
from storycue.training.families.base import (
    DEFAULT_AUDIO_FEATURES,
    Family,
    FamilyConfig,
    FeatureBank,
    MusicPart,
    TextPart,
    build_feature_bank,
)
from storycue.training.families.classification import ClassificationFamily
from storycue.training.families.metric import MetricLearningFamily
from storycue.training.families.multihead import MultiHeadClassificationFamily
from storycue.training.families.sampling import distance_weighted_probs, sample_negatives
from storycue.training.families.va import VARegressionFamily
from storycue.training.families.word import WordRegressionFamily
from storycue.training.families.wordvec import (
    EncoderWordSpace,
    FileWordSpace,
    WordSpace,
    load_word_vectors,
)

#: Every family by name.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        ClassificationFamily(),
        MultiHeadClassificationFamily(),
        VARegressionFamily(),
        WordRegressionFamily(),
        MetricLearningFamily(2),
        MetricLearningFamily(3),
    )
}


def get_family(name: str) -> Family:
    """The family called ``name`` (``"va"`` is accepted for ``"va-regression"``)."""
    from storycue.errors import InvalidInputError

    key = {"va": "va-regression"}.get(name, name)
    if key not in FAMILIES:
        raise InvalidInputError(f"unknown family {name!r}; available: {', '.join(FAMILIES)}")
    return FAMILIES[key]


__all__ = [
    "DEFAULT_AUDIO_FEATURES",
    "DEFAULT_TEXT_SOURCES",
    "FAMILIES",
    "ClassificationFamily",
    "EncoderWordSpace",
    "Family",
    "FamilyConfig",
    "FeatureBank",
    "FileWordSpace",
    "MetricLearningFamily",
    "MultiHeadClassificationFamily",
    "MusicPart",
    "TextPart",
    "VARegressionFamily",
    "WordRegressionFamily",
    "WordSpace",
    "build_feature_bank",
    "distance_weighted_probs",
    "get_family",
    "load_word_vectors",
    "sample_negatives",
]
