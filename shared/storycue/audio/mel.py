"""The musicnn mel front end in PyTorch (CPU or GPU, batched).

Reproduces what musicnn was trained on: librosa 0.10
``melspectrogram(y, sr=16000, n_fft=512, hop_length=256, n_mels=96)`` — power 2, periodic
Hann window, centred frames padded with zeros (librosa 0.10's default ``pad_mode="constant"``),
Slaney mel scale with Slaney (area) normalisation — transposed to ``(frames, mels)`` and
compressed with ``log10(10000·x + 1)`` in float32 (the pip extractor's float16 cast, which
overflows for loud tonal audio, is deliberately not reproduced).

Patching (:meth:`MelFrontend.patches`) cuts the log-mel into non-overlapping 187-frame
(≈3 s) patches, the models' input size. Two policies:

* ``"exact"`` — what the original extractor and the reference fixture do: only complete
  patches, the tail shorter than a patch is dropped, a clip shorter than one patch gives no
  patch at all (shape ``(0, 187, 96)``).
* ``"track"`` (default; for whole-track embeddings, nothing audible is silently lost):
  a clip shorter than one patch is *repeat-padded* (its frames tiled, as musicnn's training
  did with ``pad_short="repeat-pad"``) to one patch; for a longer clip, an incomplete tail of
  at least half a patch (94 frames, ≈1.5 s) adds one more patch made of the clip's last 187
  frames (overlapping the previous patch, so no padding enters the model); a shorter tail is
  dropped — at most 93 frames, under 1.5 s, at the very end of a clip at least 3 s long.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor, nn

from storycue.errors import InvalidInputError

__all__ = [
    "FFT_HOP",
    "FFT_SIZE",
    "N_MELS",
    "PATCH_FRAMES",
    "SAMPLE_RATE",
    "MelFrontend",
    "PatchPolicy",
    "slaney_mel_filterbank",
]

SAMPLE_RATE = 16_000
FFT_SIZE = 512
FFT_HOP = 256
N_MELS = 96
#: Frames per model input patch: librosa.time_to_frames(3 s) + 1 = 187 (≈2.99 s).
PATCH_FRAMES = 187

PatchPolicy = Literal["exact", "track"]


def slaney_mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = FFT_SIZE, n_mels: int = N_MELS
) -> np.ndarray:
    """torchaudio's Slaney-scale, Slaney-normalised mel filterbank, float32.

    Shape ``(n_mels, 1 + n_fft // 2)``; equal to librosa 0.10's ``filters.mel(sr, n_fft, n_mels)``
    within 2e-7 (checked against the reference fixture through the mel test).
    """
    return np.ascontiguousarray(
        AF.melscale_fbanks(
            n_freqs=1 + n_fft // 2,
            f_min=0.0,
            f_max=sr / 2.0,
            n_mels=n_mels,
            sample_rate=sr,
            norm="slaney",
            mel_scale="slaney",
        )
        .numpy()
        .T,
        dtype=np.float32,
    )


class MelFrontend(nn.Module):
    """Waveform (16 kHz) → musicnn log-mel spectrogram, as a torch module.

    ``forward`` takes ``[T]`` or ``[B, T]`` float waveforms and returns ``[B, frames, 96]``
    float32 with ``frames = 1 + T // 256``. Move it to a device with ``.to(device)``.
    """

    window: Tensor
    mel_fb: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.sample_rate = SAMPLE_RATE
        self.n_fft = FFT_SIZE
        self.hop_length = FFT_HOP
        self.n_mels = N_MELS
        self.register_buffer(
            "window", torch.hann_window(FFT_SIZE, periodic=True, dtype=torch.float32), False
        )
        # (freqs, mels) so that power[..., frames, freqs] @ mel_fb -> [..., frames, mels]
        self.register_buffer(
            "mel_fb", torch.from_numpy(slaney_mel_filterbank().T.copy()), persistent=False
        )

    def mel_power(self, wave: Tensor) -> Tensor:
        """Linear mel power spectrogram ``[B, frames, 96]`` (before the log compression)."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise InvalidInputError(
                f"MelFrontend expects a waveform of shape [T] or [B, T], got {tuple(wave.shape)}"
            )
        if wave.shape[-1] == 0:
            raise InvalidInputError("MelFrontend got an empty waveform (0 samples)")
        wave = wave.to(device=self.window.device, dtype=torch.float32)
        # centre the frames with zero padding (librosa 0.10: center=True, pad_mode="constant")
        half = self.n_fft // 2
        return self._mel_uncentred(F.pad(wave, (half, half)))

    def _mel_uncentred(self, padded: Tensor) -> Tensor:
        power = AF.spectrogram(
            padded,
            pad=0,
            window=self.window,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            power=2.0,
            normalized=False,
            center=False,
        )  # [B, freqs, frames]
        return torch.matmul(power.transpose(1, 2), self.mel_fb)

    def forward(self, wave: Tensor) -> Tensor:
        """Log-compressed mel spectrogram ``log10(10000·mel + 1)``, ``[B, frames, 96]``."""
        return torch.log10(self.mel_power(wave) * 10000.0 + 1.0)

    def logmel_long(self, wave: Tensor, *, block_frames: int = 4096) -> Tensor:
        """Log-mel ``[frames, 96]`` of one long 1-D waveform, computed in blocks of frames.

        Same values as ``forward(wave)[0]`` but the STFT's peak memory is bounded by
        ``block_frames`` (4,096 frames ≈ 65 s) instead of the whole clip.
        """
        if wave.dim() != 1:
            raise InvalidInputError(f"logmel_long expects a 1-D waveform, got {tuple(wave.shape)}")
        if wave.shape[0] == 0:
            raise InvalidInputError("MelFrontend got an empty waveform (0 samples)")
        if block_frames < 1:
            raise InvalidInputError("block_frames must be at least 1")
        half = self.n_fft // 2
        padded = F.pad(wave.to(device=self.window.device, dtype=torch.float32), (half, half))
        n_frames = 1 + wave.shape[0] // self.hop_length
        blocks = []
        for f0 in range(0, n_frames, block_frames):
            f1 = min(f0 + block_frames, n_frames)
            seg = padded[f0 * self.hop_length : (f1 - 1) * self.hop_length + self.n_fft]
            blocks.append(torch.log10(self._mel_uncentred(seg.unsqueeze(0))[0] * 10000.0 + 1.0))
        return torch.cat(blocks, dim=0)

    @staticmethod
    def patches(
        logmel: Tensor, *, policy: PatchPolicy = "track", patch_frames: int = PATCH_FRAMES
    ) -> Tensor:
        """Cut one clip's log-mel ``[frames, 96]`` into patches ``[N, patch_frames, 96]``.

        See the module docstring for the ``"exact"`` (reference) and ``"track"`` (default,
        whole-track embeddings) policies for the tail and for clips shorter than one patch.
        """
        if logmel.dim() == 3 and logmel.shape[0] == 1:
            logmel = logmel[0]
        if logmel.dim() != 2:
            raise InvalidInputError(
                f"patches() expects one clip's log-mel [frames, mels], got {tuple(logmel.shape)}"
            )
        frames = logmel.shape[0]
        n_full = frames // patch_frames
        if policy == "exact":
            return logmel[: n_full * patch_frames].reshape(n_full, patch_frames, logmel.shape[1])
        if policy != "track":
            raise InvalidInputError(f"unknown patch policy {policy!r}; use 'exact' or 'track'")
        if frames == 0:
            raise InvalidInputError("cannot cut patches from an empty spectrogram")
        if n_full == 0:
            reps = math.ceil(patch_frames / frames)
            return logmel.repeat(reps, 1)[:patch_frames].unsqueeze(0)
        out = logmel[: n_full * patch_frames].reshape(n_full, patch_frames, logmel.shape[1])
        tail = frames - n_full * patch_frames
        if tail * 2 >= patch_frames:
            out = torch.cat([out, logmel[-patch_frames:].unsqueeze(0)], dim=0)
        return out
