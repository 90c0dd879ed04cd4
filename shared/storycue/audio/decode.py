"""Decode audio files (wav, flac, ogg, mp3 — whatever libsndfile reads) to mono 16 kHz.

:func:`load_audio` takes a path or the file's bytes and returns a :class:`DecodedAudio`.
Every way a file can be unusable raises :class:`~storycue.errors.AudioDecodeError` with a
message that says what was wrong:

* larger than ``limits.max_audio_bytes``; empty; not an audio format libsndfile knows;
* a WAV file whose header promises more audio than the file holds (truncated), or a header
  whose duration exceeds ``limits.max_audio_seconds`` (checked *before* decoding);
* longer than ``limits.max_audio_seconds`` once decoded (rejected, never truncated; MP3 frame
  counts in the header are estimates, so the limit is also enforced while decoding);
* no samples, NaN or infinite samples, or shorter than ``limits.min_audio_seconds``.

An MP3 cut short has no length field to betray it: what decodes is kept (a warning is
logged when it is much shorter than the header's estimate) and the duration limits apply.

Decoding reads blocks of frames, downmixes each block to mono (channel mean) and resamples
it with :func:`torchaudio.functional.resample` in a streaming fashion (overlapping context
so the result equals resampling the whole signal), so peak memory is about the 16 kHz
output plus one block, not the whole multichannel native-rate signal.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from storycue.config import Settings, get_settings
from storycue.errors import AudioDecodeError
from storycue.log import get_logger

__all__ = ["TARGET_SAMPLE_RATE", "DecodedAudio", "StreamResampler", "load_audio"]

log = get_logger(__name__)

#: The sample rate every storycue audio model expects.
TARGET_SAMPLE_RATE = 16_000
#: Sample rates and channel counts outside these bounds are refused as corrupt headers.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
#: Most taps of the resampling kernel (sr/gcd x target/gcd) accepted.
MAX_RESAMPLE_KERNEL = 4_000_000
_BLOCK_SECONDS = 10.0
_SUPPORTED = "WAV, FLAC, OGG/Vorbis/Opus or MP3"


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded, mono, resampled clip.

    ``waveform`` is float32, 1-D, at ``sample_rate`` Hz; ``original_sample_rate`` and
    ``channels`` describe the file as stored; ``duration_s`` is the decoded duration.
    """

    waveform: np.ndarray
    sample_rate: int
    duration_s: float
    original_sample_rate: int
    channels: int


class StreamResampler:
    """Resample a signal pushed in blocks; the output equals resampling it in one piece.

    Uses :func:`torchaudio.functional.resample` (sinc interpolation, Hann window, default
    width) on overlapping segments: each segment carries enough context on both sides to
    cover the interpolation kernel, and segment boundaries fall on multiples of the rate
    ratio's period so the outputs line up exactly.
    """

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        g = math.gcd(orig_sr, new_sr)
        self.orig_sr, self.new_sr = orig_sr, new_sr
        self._o, self._n = orig_sr // g, new_sr // g
        width = math.ceil(6 * self._o / (0.99 * min(self._o, self._n)))  # torchaudio's kernel
        self._ctx = self._o * math.ceil((width + 8) / self._o)
        self._buf = np.zeros(self._ctx, dtype=np.float32)  # left context: zeros, as torchaudio
        self._total_in = 0
        self._total_out = 0

    def _resample(self, seg: np.ndarray) -> np.ndarray:
        out = AF.resample(torch.from_numpy(seg), self.orig_sr, self.new_sr)
        return np.asarray(out.numpy(), dtype=np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Feed the next samples; returns the output samples that are final so far."""
        if self.orig_sr == self.new_sr:
            self._total_in += x.shape[0]
            return x.astype(np.float32, copy=False)
        self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        self._total_in += x.shape[0]
        avail = self._buf.shape[0] - 2 * self._ctx
        span = (avail // self._o) * self._o
        if span <= 0:
            return np.zeros(0, dtype=np.float32)
        y = self._resample(self._buf[: span + 2 * self._ctx])
        start = self._ctx * self._n // self._o
        out = y[start : start + span * self._n // self._o]
        self._buf = self._buf[span:]
        self._total_out += out.shape[0]
        return out

    def finish(self) -> np.ndarray:
        """Flush the remaining samples (zero right context, as torchaudio pads)."""
        if self.orig_sr == self.new_sr:
            return np.zeros(0, dtype=np.float32)
        expected = math.ceil(self._total_in * self._n / self._o)
        remaining = expected - self._total_out
        if remaining <= 0:
            return np.zeros(0, dtype=np.float32)
        seg = np.concatenate([self._buf, np.zeros(self._ctx, dtype=np.float32)])
        y = self._resample(seg)
        start = self._ctx * self._n // self._o
        out = y[start : start + remaining]
        self._total_out += out.shape[0]
        return out


def _wav_declared_frames(head: bytes, channels: int, subtype: str) -> int | None:
    """Frames a RIFF/WAVE header's ``data`` chunk declares; None when unknown/streamed."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    bits = {
        "PCM_U8": 8,
        "ULAW": 8,
        "ALAW": 8,
        "PCM_16": 16,
        "PCM_24": 24,
        "PCM_32": 32,
        "FLOAT": 32,
        "DOUBLE": 64,
    }
    if subtype not in bits:
        return None
    pos = 12
    while pos + 8 <= len(head):
        cid = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        if cid == b"data":
            if size in (0, 0xFFFFFFFF):  # written by a streaming encoder: length unknown
                return None
            return int(size) // (channels * bits[subtype] // 8)
        pos += 8 + size + (size & 1)
    return None


def _open(src: Path | str | bytes, max_bytes: int) -> tuple[sf.SoundFile, bytes, str]:
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        label = f"<{len(data)} bytes>"
        if len(data) > max_bytes:
            raise AudioDecodeError(
                f"audio of {len(data)} bytes exceeds the limit of {max_bytes} bytes "
                "(STORYCUE_LIMITS__MAX_AUDIO_BYTES)",
                detail={"bytes": len(data), "max_bytes": max_bytes},
            )
        if not data:
            raise AudioDecodeError("the audio data is empty (0 bytes)")
        fobj: io.BytesIO | str = io.BytesIO(data)
        head = data[:65536]
    else:
        path = Path(src)
        label = str(path)
        if not path.is_file():
            raise AudioDecodeError(f"audio file not found (or not a file): {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise AudioDecodeError(
                f"{path} is {size} bytes, over the limit of {max_bytes} bytes "
                "(STORYCUE_LIMITS__MAX_AUDIO_BYTES)",
                detail={"bytes": size, "max_bytes": max_bytes},
            )
        if size == 0:
            raise AudioDecodeError(f"{path} is empty (0 bytes)")
        with path.open("rb") as fh:
            head = fh.read(65536)
        fobj = str(path)
    try:
        return sf.SoundFile(fobj), head, label
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioDecodeError(
            f"{label} is not a decodable audio file ({_SUPPORTED} expected): {exc}"
        ) from exc


def load_audio(
    src: Path | str | bytes,
    *,
    target_sr: int = TARGET_SAMPLE_RATE,
    settings: Settings | None = None,
) -> DecodedAudio:
    """Decode ``src`` (a path or a file's bytes) to a mono float32 waveform at ``target_sr``.

    Raises :class:`~storycue.errors.AudioDecodeError` for unusable input (see the module
    docstring); limits come from ``settings.limits`` (default :func:`get_settings`).
    """
    if target_sr <= 0:
        raise AudioDecodeError(f"target_sr must be positive, got {target_sr}")
    limits = (settings or get_settings()).limits
    f, head, label = _open(src, limits.max_audio_bytes)
    with f:
        sr, channels, header_frames = f.samplerate, f.channels, f.frames
        if not (MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE) or not 0 < channels <= MAX_CHANNELS:
            # Checked before any allocation: blocks and the resampler's buffers scale with
            # the header's rate and channels, so a forged header could exhaust memory.
            raise AudioDecodeError(
                f"{label}: invalid header (sample rate {sr} Hz, {channels} channels; "
                f"supported: {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz, 1-{MAX_CHANNELS} channels)"
            )
        g = math.gcd(sr, target_sr)
        if (sr // g) * (target_sr // g) > MAX_RESAMPLE_KERNEL:
            # torchaudio's sinc kernel has (sr/g) x (target/g) taps: an odd rate such as
            # 44101 Hz would need gigabytes. Real-world rates are far below the bound.
            raise AudioDecodeError(
                f"{label}: unsupported sample rate {sr} Hz (cannot be resampled to "
                f"{target_sr} Hz exactly); re-encode it at a standard rate"
            )
        declared = _wav_declared_frames(head, channels, f.subtype) if f.format == "WAV" else None
        header_s = max(header_frames, declared or 0) / sr
        if header_s > limits.max_audio_seconds:
            raise AudioDecodeError(
                f"{label}: audio lasts {header_s:.1f} s according to its header, over the "
                f"limit of {limits.max_audio_seconds:g} s (STORYCUE_LIMITS__MAX_AUDIO_SECONDS); "
                "long audio is rejected, not truncated — cut it first",
                detail={"duration_s": header_s, "max_seconds": limits.max_audio_seconds},
            )
        # a few missing milliseconds (sloppy writers) are tolerated, real truncation is not
        if declared is not None and declared > header_frames + sr // 100:
            raise AudioDecodeError(
                f"{label}: truncated WAV file — its header declares {declared / sr:.2f} s of "
                f"audio but the file holds only {header_frames / sr:.2f} s",
                detail={"declared_s": declared / sr, "available_s": header_frames / sr},
            )
        max_frames = int(limits.max_audio_seconds * sr)
        block = max(1024, int(_BLOCK_SECONDS * sr))
        resampler = StreamResampler(sr, target_sr)
        pieces: list[np.ndarray] = []
        frames = 0
        try:
            while True:
                chunk = f.read(block, dtype="float32", always_2d=True)
                if chunk.shape[0] == 0:
                    break
                frames += chunk.shape[0]
                if frames > max_frames:
                    raise AudioDecodeError(
                        f"{label}: audio is longer than the limit of "
                        f"{limits.max_audio_seconds:g} s (STORYCUE_LIMITS__MAX_AUDIO_SECONDS); "
                        "long audio is rejected, not truncated — cut it first",
                        detail={"max_seconds": limits.max_audio_seconds},
                    )
                if not np.isfinite(chunk).all():
                    bad_at = frames - chunk.shape[0] + int(np.argmin(np.isfinite(chunk).all(1)))
                    raise AudioDecodeError(
                        f"{label}: contains NaN or infinite samples (first at "
                        f"{bad_at / sr:.3f} s); the file is corrupt",
                    )
                mono = chunk[:, 0] if channels == 1 else chunk.mean(axis=1, dtype=np.float32)
                pieces.append(resampler.push(mono))
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioDecodeError(
                f"{label}: decoding failed after {frames / sr:.2f} s — the file is corrupt or "
                f"truncated: {exc}"
            ) from exc
        pieces.append(resampler.finish())
    if frames == 0:
        raise AudioDecodeError(f"{label}: the file holds no audio samples (zero length)")
    duration = frames / sr
    if duration < limits.min_audio_seconds:
        raise AudioDecodeError(
            f"{label}: audio lasts {duration:.2f} s, shorter than the minimum of "
            f"{limits.min_audio_seconds:g} s (STORYCUE_LIMITS__MIN_AUDIO_SECONDS)",
            detail={"duration_s": duration, "min_seconds": limits.min_audio_seconds},
        )
    if header_frames > 0 and frames < header_frames - sr:
        log.warning(
            "audio_shorter_than_header",
            source=label,
            decoded_s=round(duration, 3),
            header_s=round(header_frames / sr, 3),
        )
    wave = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    return DecodedAudio(
        waveform=np.ascontiguousarray(wave, dtype=np.float32),
        sample_rate=target_sr,
        duration_s=duration,
        original_sample_rate=sr,
        channels=channels,
    )
