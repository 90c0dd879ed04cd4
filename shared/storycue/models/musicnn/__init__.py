"""PyTorch port of musicnn 0.1.0 (Pons & Serra, ISC licence), loaded without TensorFlow.

>>> bb = load_backbone("MTT_musicnn", device="cpu")            # doctest: +SKIP
>>> feats = bb.embed_waveform(decoded.waveform)                  # doctest: +SKIP
>>> feats["penultimate"].shape                                   # doctest: +SKIP
(200,)
"""

from storycue.models.musicnn.backbone import (
    BACKBONES,
    MSD_LABELS,
    MTT_LABELS,
    MUSICNN_VERSION,
    BackboneSpec,
    MusicnnBackbone,
    clear_backbone_cache,
    load_backbone,
    resolve_weights_dir,
)

__all__ = [
    "BACKBONES",
    "MSD_LABELS",
    "MTT_LABELS",
    "MUSICNN_VERSION",
    "BackboneSpec",
    "MusicnnBackbone",
    "clear_backbone_cache",
    "load_backbone",
    "resolve_weights_dir",
]
