"""Synthetic clips: a few short WAV files for a machine with no music (the demo, tests)."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np


def synthesise_clips(folder: Path, seconds: float = 6.0, sr: int = 16000) -> list[Path]:
    """Write a few short synthetic WAV clips (named synthetic-*) for a machine with no music."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    clips = {
        "synthetic-bright-major-arpeggio": sum(
            np.sin(2 * math.pi * f * t) * (np.sin(2 * math.pi * 4 * t) > 0)
            for f in (523.25, 659.25, 783.99)
        ),
        "synthetic-slow-low-drone": np.sin(2 * math.pi * 55 * t) * 0.8
        + 0.2 * np.sin(2 * math.pi * 110.5 * t),
        "synthetic-fast-noise-bursts": rng.standard_normal(t.size)
        * (np.sin(2 * math.pi * 8 * t) > 0.3),
        "synthetic-soft-minor-chord": sum(
            np.sin(2 * math.pi * f * t) for f in (220.0, 261.63, 329.63)
        )
        * np.exp(-t / 4),
        "synthetic-driving-pulse": np.sign(np.sin(2 * math.pi * 110 * t))
        * (np.sin(2 * math.pi * 6 * t) > 0),
    }
    paths = []
    for name, sig in clips.items():
        x = np.asarray(sig, dtype=np.float64)
        x = 0.5 * x / max(float(np.abs(x).max()), 1e-9)
        path = folder / f"{name}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sr)
            w.writeframes((x * 32767).astype("<i2").tobytes())
        paths.append(path)
    return paths
