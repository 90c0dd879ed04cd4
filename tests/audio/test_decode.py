"""Decoding audio files to mono 16 kHz, and refusing the ones we cannot use."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from storycue.audio.decode import DecodedAudio, StreamResampler, load_audio
from storycue.config import Settings
from storycue.errors import AudioDecodeError, InvalidInputError

DATA_4Q = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "4q"
REAL_MP3 = DATA_4Q / "Q1" / "MT0000040632.mp3"


def tone(seconds: float, sr: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def encode(x: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def settings(**limits: float) -> Settings:
    s = Settings()
    return s.model_copy(update={"limits": s.limits.model_copy(update=limits)})


# ---- good input -------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", [44100, 22050, 8000, 16000])
def test_resamples_to_16k(sr: int) -> None:
    x = tone(2.0, sr)
    out = load_audio(encode(x, sr, subtype="FLOAT"))
    assert isinstance(out, DecodedAudio)
    assert out.sample_rate == 16000 and out.original_sample_rate == sr and out.channels == 1
    assert out.waveform.dtype == np.float32 and out.waveform.ndim == 1
    assert out.waveform.shape[0] == 32000
    assert out.duration_s == pytest.approx(2.0)
    # same as resampling the whole signal at once with torchaudio
    ref = AF.resample(torch.from_numpy(x), sr, 16000).numpy()
    np.testing.assert_allclose(out.waveform, ref, atol=1e-5)
    # the tone survives: dominant frequency still 440 Hz
    spec = np.abs(np.fft.rfft(out.waveform))
    assert np.fft.rfftfreq(out.waveform.size, 1 / 16000)[spec.argmax()] == pytest.approx(440, abs=1)


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path: Path) -> None:
    left = tone(1.5, 16000, 440.0)
    right = tone(1.5, 16000, 1000.0)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    out = load_audio(path)
    assert out.channels == 2
    np.testing.assert_allclose(out.waveform, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG", "MP3"])
def test_compressed_formats(fmt: str) -> None:
    out = load_audio(encode(tone(2.0, 44100, channels=2), 44100, fmt))
    assert out.channels == 2 and out.original_sample_rate == 44100
    assert out.duration_s == pytest.approx(2.0, abs=0.1)
    assert 0.2 < np.abs(out.waveform).max() < 0.7


def test_path_as_str_and_long_file_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    x = tone(25.0, 22050)  # 25 s: several 10 s decode blocks
    sf.write(path, x, 22050, subtype="FLOAT")
    out = load_audio(str(path))
    ref = AF.resample(torch.from_numpy(x), 22050, 16000).numpy()
    assert out.waveform.shape == ref.shape
    np.testing.assert_allclose(out.waveform, ref, atol=1e-5)


def test_stream_resampler_equals_one_shot() -> None:
    x = np.random.default_rng(1).standard_normal(50_000).astype(np.float32)
    for sr in (44100, 48000, 11025):
        r = StreamResampler(sr, 16000)
        y = np.concatenate([*(r.push(x[i : i + 9001]) for i in range(0, x.size, 9001)), r.finish()])
        ref = AF.resample(torch.from_numpy(x), sr, 16000).numpy()
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, atol=1e-5)


@pytest.mark.data
@pytest.mark.skipif(not REAL_MP3.is_file(), reason=f"4Q dataset clip not found at {REAL_MP3}")
def test_real_4q_mp3() -> None:
    out = load_audio(REAL_MP3)
    assert out.sample_rate == 16000
    assert 29.0 < out.duration_s < 31.0
    assert out.waveform.shape[0] == pytest.approx(out.duration_s * 16000, abs=2)
    assert np.isfinite(out.waveform).all() and 0.05 < np.abs(out.waveform).max() <= 1.5


# ---- bad input ------------------------------------------------------------------------------
def test_errors_are_storycue_input_errors() -> None:
    with pytest.raises(InvalidInputError) as exc:
        load_audio(b"")
    assert exc.value.code == "audio_decode_error"


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(tmp_path / "empty.wav")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="not found"):
        load_audio(tmp_path / "nope.mp3")


def test_random_bytes() -> None:
    junk = np.random.default_rng(0).bytes(20_000)
    with pytest.raises(AudioDecodeError, match="not a decodable audio file"):
        load_audio(junk)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "story.mp3"
    path.write_text("Once upon a time, there was no audio in this file.\n" * 50)
    with pytest.raises(AudioDecodeError, match="not a decodable audio file"):
        load_audio(path)


def test_truncated_wav() -> None:
    data = encode(tone(3.0, 16000), 16000, subtype="PCM_16")
    with pytest.raises(AudioDecodeError, match="truncated WAV"):
        load_audio(data[: len(data) // 2])


def test_wav_header_claiming_hours_is_rejected_before_decoding() -> None:
    data = bytearray(encode(tone(2.0, 16000), 16000, subtype="PCM_16"))
    pos = data.find(b"data")
    data[pos + 4 : pos + 8] = struct.pack("<I", 16000 * 2 * 3 * 3600)  # 3 hours
    with pytest.raises(AudioDecodeError, match="according to its header") as exc:
        load_audio(bytes(data))
    assert exc.value.detail["duration_s"] == pytest.approx(3 * 3600)


def test_truncated_mp3_header_only() -> None:
    data = encode(tone(3.0, 44100), 44100, "MP3")
    with pytest.raises(AudioDecodeError):
        load_audio(data[:300])


@pytest.mark.data
@pytest.mark.skipif(not REAL_MP3.is_file(), reason=f"4Q dataset clip not found at {REAL_MP3}")
def test_truncated_real_mp3() -> None:
    data = REAL_MP3.read_bytes()
    # cut mid-frame after ~0.6 s: what decodes is shorter than the 1 s minimum
    with pytest.raises(AudioDecodeError, match="shorter than the minimum"):
        load_audio(data[: len(data) // 50])
    # cut in half: MP3 has no length field, the first half decodes (15 s), never more
    half = load_audio(data[: len(data) // 2])
    assert 13.0 < half.duration_s < 16.0


def test_nan_samples() -> None:
    x = tone(2.0, 16000)
    x[12345] = np.nan
    with pytest.raises(AudioDecodeError, match="NaN or infinite"):
        load_audio(encode(x, 16000, subtype="FLOAT"))
    x[12345] = np.inf
    with pytest.raises(AudioDecodeError, match="NaN or infinite"):
        load_audio(encode(x, 16000, subtype="FLOAT"))


def test_zero_length_audio() -> None:
    with pytest.raises(AudioDecodeError, match="no audio samples"):
        load_audio(encode(np.zeros(0, np.float32), 16000, subtype="PCM_16"))


def test_too_short_clip() -> None:
    with pytest.raises(AudioDecodeError, match=r"0\.20 s, shorter than the minimum of 1 s"):
        load_audio(encode(tone(0.2, 16000), 16000))
    out = load_audio(encode(tone(0.2, 16000), 16000), settings=settings(min_audio_seconds=0.1))
    assert out.waveform.shape == (3200,)


def test_too_long_clip_is_rejected_not_truncated() -> None:
    data = encode(tone(3.0, 16000), 16000)
    with pytest.raises(AudioDecodeError, match="over the limit of 2 s"):
        load_audio(data, settings=settings(max_audio_seconds=2.0))
    # MP3: the header's length is used before decoding (and the limit is enforced again
    # while decoding, in case an MP3 header underestimates)
    mp3 = encode(tone(25.0, 16000), 16000, "MP3")
    with pytest.raises(AudioDecodeError, match=r"over the limit of 24\.99 s"):
        load_audio(mp3, settings=settings(max_audio_seconds=24.99))
    assert load_audio(mp3, settings=settings(max_audio_seconds=25.2)).duration_s <= 25.2


def test_too_many_bytes(tmp_path: Path) -> None:
    data = encode(tone(2.0, 16000), 16000)
    limited = settings(max_audio_bytes=1000)
    with pytest.raises(AudioDecodeError, match="over the limit of 1000 bytes"):
        (tmp_path / "a.wav").write_bytes(data)
        load_audio(tmp_path / "a.wav", settings=limited)
    with pytest.raises(AudioDecodeError, match="exceeds the limit of 1000 bytes"):
        load_audio(data, settings=limited)
