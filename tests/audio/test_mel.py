"""The musicnn mel front end: shapes, filterbank, batching and patching policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storycue.audio.mel import PATCH_FRAMES, MelFrontend, slaney_mel_filterbank
from storycue.errors import InvalidInputError


def test_filterbank_matches_slaney_properties() -> None:
    fb = slaney_mel_filterbank()
    assert fb.shape == (96, 257) and fb.dtype == np.float32
    assert (fb >= 0).all()
    # every band is a triangle with some support; Slaney norm: area ~ constant 2/(bandwidth)
    assert (fb.max(axis=1) > 0).all()
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()  # centre frequencies increase
    # agrees with torchaudio's Slaney-scale, Slaney-norm filterbank
    from torchaudio.functional import melscale_fbanks

    ta = melscale_fbanks(257, 0.0, 8000.0, 96, 16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(fb, ta.numpy().T, atol=1e-6)


def test_shapes_and_batching() -> None:
    front = MelFrontend()
    rng = np.random.default_rng(0)
    waves = torch.from_numpy(rng.standard_normal((3, 48000)).astype(np.float32) * 0.1)
    batched = front(waves)
    assert batched.shape == (3, 1 + 48000 // 256, 96) and batched.dtype == torch.float32
    single = front(waves[1])
    assert single.shape == (1, 188, 96)
    torch.testing.assert_close(single[0], batched[1], atol=1e-5, rtol=0)


def test_silence_is_zero_and_log_compression() -> None:
    front = MelFrontend()
    assert front(torch.zeros(16000)).abs().max().item() == 0.0
    wave = torch.from_numpy(np.random.default_rng(1).standard_normal(16000).astype(np.float32))
    power = front.mel_power(wave)
    torch.testing.assert_close(front(wave), torch.log10(10000 * power + 1))


def test_tone_energy_lands_in_the_right_band() -> None:
    t = torch.arange(32000) / 16000
    logmel = MelFrontend()(torch.sin(2 * torch.pi * 1000 * t))[0]
    band = int(logmel.mean(dim=0).argmax())
    fb = slaney_mel_filterbank()
    freqs = np.fft.rfftfreq(512, 1 / 16000)
    assert abs(freqs[fb[band].argmax()] - 1000) < 100


def test_bad_waveforms() -> None:
    front = MelFrontend()
    with pytest.raises(InvalidInputError, match="empty"):
        front(torch.zeros(0))
    with pytest.raises(InvalidInputError, match=r"\[T\] or \[B, T\]"):
        front(torch.zeros(2, 2, 100))


def ramp(frames: int) -> torch.Tensor:
    return torch.arange(frames, dtype=torch.float32)[:, None].repeat(1, 96)


def test_exact_patches_reproduce_the_reference_cut() -> None:
    p = MelFrontend.patches(ramp(400), policy="exact")
    assert p.shape == (2, PATCH_FRAMES, 96)
    assert p[1, 0, 0] == 187 and p[1, -1, 0] == 373  # frames 374..399 dropped
    assert MelFrontend.patches(ramp(100), policy="exact").shape == (0, PATCH_FRAMES, 96)


def test_track_patches_keep_a_long_tail_as_an_end_aligned_patch() -> None:
    p = MelFrontend.patches(ramp(187 * 2 + 94))  # tail 94 >= half a patch
    assert p.shape == (3, PATCH_FRAMES, 96)
    assert p[2, -1, 0] == 187 * 2 + 93 and p[2, 0, 0] == 187 * 2 + 94 - 187
    p = MelFrontend.patches(ramp(187 * 2 + 93))  # tail 93 < half: dropped
    assert p.shape == (2, PATCH_FRAMES, 96)
    assert MelFrontend.patches(ramp(187)).shape == (1, PATCH_FRAMES, 96)


def test_track_patches_repeat_pad_a_short_clip() -> None:
    p = MelFrontend.patches(ramp(80))
    assert p.shape == (1, PATCH_FRAMES, 96)
    assert p[0, :80, 0].tolist() == list(range(80))
    assert p[0, 80:160, 0].tolist() == list(range(80))
    assert p[0, 160, 0] == 0


def test_patches_rejects_bad_shapes() -> None:
    with pytest.raises(InvalidInputError):
        MelFrontend.patches(torch.zeros(2, 10, 96, 1))
    with pytest.raises(InvalidInputError, match="unknown patch policy"):
        MelFrontend.patches(ramp(10), policy="bogus")  # type: ignore[arg-type]
