"""Audio input: decoding files to mono 16 kHz (:mod:`.decode`) and the musicnn log-mel
front end (:mod:`.mel`)."""

from storycue.audio.decode import TARGET_SAMPLE_RATE, DecodedAudio, load_audio
from storycue.audio.mel import PATCH_FRAMES, MelFrontend

__all__ = ["PATCH_FRAMES", "TARGET_SAMPLE_RATE", "DecodedAudio", "MelFrontend", "load_audio"]
