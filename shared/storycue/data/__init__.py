"""Dataset loaders, splits and record types.

Each loader reads from an explicit path or from ``Settings.dataset_dir(name)``
(``STORYCUE_DATA_DIR``) and returns frozen dataclass records. The datasets are never
copied into the project: several of them may not be redistributed.

* :mod:`storycue.data.fourq` — 4Q music clips (:func:`load_fourq`), any gallery in the
  same format (:func:`load_gallery`).
* :mod:`storycue.data.splits` — artist-disjoint 4Q split (:func:`split_fourq`), stratified
  splits, fingerprints.
* :mod:`storycue.data.isear`, :mod:`~storycue.data.goemotions`,
  :mod:`~storycue.data.emobank`, :mod:`~storycue.data.alm` — text sets.
* :mod:`storycue.data.nrc_vad` — the NRC VAD lexicon (:class:`VadLexicon`).
* :mod:`storycue.data.audioset_mood` — AudioSet mood clips from a manifest.
"""

from storycue.data.alm import ALM_LABELS, AlmRecord, load_alm
from storycue.data.audioset_mood import (
    AUDIOSET_MOOD_LABELS,
    AudiosetMoodRecord,
    AudiosetMoodSet,
    load_audioset_mood,
)
from storycue.data.emobank import EmoBankRecord, load_emobank, rescale
from storycue.data.fourq import QUADRANTS, FourQRecord, GalleryLoad, load_fourq, load_gallery
from storycue.data.goemotions import (
    EKMAN_GROUPS,
    EKMAN_LABELS,
    GoEmotionsRecord,
    ekman_group,
    load_goemotions,
)
from storycue.data.isear import (
    ISEAR_LABELS,
    IsearCleaning,
    IsearRecord,
    clean_isear,
    is_placeholder,
    load_isear,
    read_isear,
    split_isear,
)
from storycue.data.nrc_vad import VAD, LexiconCoverage, VadLexicon, load_nrc_vad
from storycue.data.splits import (
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    FourQSplit,
    Split,
    artist_groups,
    fingerprint,
    normalise_artist,
    split_fourq,
    stratified_split,
)

__all__ = [
    "ALM_LABELS",
    "AUDIOSET_MOOD_LABELS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_SEED",
    "EKMAN_GROUPS",
    "EKMAN_LABELS",
    "ISEAR_LABELS",
    "QUADRANTS",
    "VAD",
    "AlmRecord",
    "AudiosetMoodRecord",
    "AudiosetMoodSet",
    "EmoBankRecord",
    "FourQRecord",
    "FourQSplit",
    "GalleryLoad",
    "GoEmotionsRecord",
    "IsearCleaning",
    "IsearRecord",
    "LexiconCoverage",
    "Split",
    "VadLexicon",
    "artist_groups",
    "clean_isear",
    "ekman_group",
    "fingerprint",
    "is_placeholder",
    "load_alm",
    "load_audioset_mood",
    "load_emobank",
    "load_fourq",
    "load_gallery",
    "load_goemotions",
    "load_isear",
    "load_nrc_vad",
    "normalise_artist",
    "read_isear",
    "rescale",
    "split_fourq",
    "split_isear",
    "stratified_split",
]
