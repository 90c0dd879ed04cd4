"""Mixed precision of the musicnn backbone and the torch text encoder, gated by a probe.

CPU autocast supports bfloat16, so ``precision="bf16"`` exercises the same autocast path a
CUDA float16 run takes; ``"auto"`` on CPU must never autocast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from storycue.config import Settings
from storycue.models import precision as precision_mod
from storycue.models.musicnn import MusicnnBackbone, load_backbone
from storycue.models.precision import PROBE_TOLERANCE, PrecisionGate, candidate_dtype
from storycue.models.text import TextEncoder

SENTENCES = [
    "The storm broke over the harbour and the boats pulled at their ropes.",
    "She laughed.",
    "Nobody came to the funeral, not even the brother who had promised to.",
]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def wave(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    return tone.astype(np.float32)


class AutocastSpy:
    """A forward pre-hook recording whether CPU autocast was on for each call."""

    def __init__(self, module: nn.Module) -> None:
        self.seen: list[bool] = []
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: object) -> None:
        self.seen.append(torch.is_autocast_enabled("cpu"))


@pytest.fixture(scope="module")
def fp32_backbone(musicnn_weights_dir: Path) -> MusicnnBackbone:
    return load_backbone(
        "MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu", precision="fp32"
    )


@pytest.fixture(scope="module")
def fp32_text() -> TextEncoder:
    return TextEncoder(backend="torch", precision="fp32")


def test_setting_defaults_to_auto_and_auto_is_fp32_off_cuda() -> None:
    assert Settings().precision == "auto"
    assert Settings(precision="bf16").precision == "bf16"
    assert candidate_dtype("auto", torch.device("cpu")) is None
    assert candidate_dtype("auto", torch.device("cuda")) is torch.float16
    assert candidate_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert candidate_dtype("fp32", torch.device("cuda")) is None


def test_mel_front_end_lives_on_the_backbone_device(fp32_backbone: MusicnnBackbone) -> None:
    assert fp32_backbone.mel.window.device == fp32_backbone.device
    assert fp32_backbone.mel.mel_fb.device == fp32_backbone.device


def test_backbone_bf16_within_tolerance(
    fp32_backbone: MusicnnBackbone, musicnn_weights_dir: Path
) -> None:
    bf16 = load_backbone(
        "MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu", precision="bf16"
    )
    assert bf16 is not fp32_backbone  # precision is part of the cache key
    spy = AutocastSpy(bf16.net)
    x = wave()
    try:
        low = bf16.embed_waveform(x)
    finally:
        spy.handle.remove()
    ref = fp32_backbone.embed_waveform(x)
    gate = bf16.precision_gate
    assert gate.decision == "accepted"
    assert gate.probe_diff is not None and gate.probe_diff <= PROBE_TOLERANCE
    assert spy.seen and spy.seen[-1] is True
    for key, vec in ref.items():
        assert low[key].dtype == np.float32
        diff = float(np.abs(unit(low[key]) - unit(vec)).max())
        assert diff <= PROBE_TOLERANCE, (key, diff)
        assert not np.array_equal(low[key], vec)  # it really ran in bfloat16


def test_backbone_falls_back_to_fp32_outside_tolerance(
    fp32_backbone: MusicnnBackbone, musicnn_weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision_mod, "PROBE_TOLERANCE", 1e-12)
    bb = MusicnnBackbone(
        fp32_backbone.spec, fp32_backbone.net, device="cpu", weights_dir=musicnn_weights_dir,
        precision="bf16",
    )  # fmt: skip
    x = wave(seed=1)
    out = bb.embed_waveform(x)
    assert bb.precision_gate.decision == "rejected"
    assert bb.precision_gate.probe_diff is not None and bb.precision_gate.probe_diff > 1e-12
    ref = fp32_backbone.embed_waveform(x)
    for key, vec in ref.items():
        np.testing.assert_array_equal(out[key], vec)


def test_backbone_auto_on_cpu_never_autocasts(
    fp32_backbone: MusicnnBackbone, musicnn_weights_dir: Path
) -> None:
    bb = MusicnnBackbone(
        fp32_backbone.spec, fp32_backbone.net, device="cpu", weights_dir=musicnn_weights_dir,
        precision="auto",
    )  # fmt: skip
    spy = AutocastSpy(bb.net)
    try:
        out = bb.embed_waveform(wave(seed=2))
    finally:
        spy.handle.remove()
    assert bb.precision_gate.decision == "fp32" and bb.precision_gate.probe_diff is None
    assert spy.seen and not any(spy.seen)  # not even a probe ran under autocast
    ref = fp32_backbone.embed_waveform(wave(seed=2))
    for key, vec in ref.items():
        np.testing.assert_array_equal(out[key], vec)


def test_text_bf16_within_tolerance(fp32_text: TextEncoder) -> None:
    enc = TextEncoder(backend="torch", precision="bf16")
    low = enc.encode(SENTENCES)
    ref = fp32_text.encode(SENTENCES)
    gate = enc.precision_gate
    assert gate is not None and gate.decision == "accepted"
    assert gate.probe_diff is not None and gate.probe_diff <= PROBE_TOLERANCE
    assert low.dtype == np.float32
    assert float(np.abs(low - ref).max()) <= PROBE_TOLERANCE
    assert not np.array_equal(low, ref)


def test_text_falls_back_to_fp32_outside_tolerance(
    fp32_text: TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision_mod, "PROBE_TOLERANCE", 1e-12)
    enc = TextEncoder(backend="torch", precision="bf16")
    out = enc.encode(SENTENCES)
    gate = enc.precision_gate
    assert gate is not None and gate.decision == "rejected"
    np.testing.assert_array_equal(out, fp32_text.encode(SENTENCES))


def test_text_auto_on_cpu_never_autocasts(fp32_text: TextEncoder) -> None:
    enc = TextEncoder(backend="torch", precision="auto")
    spy = AutocastSpy(enc.model().model)
    out = enc.encode(SENTENCES)
    gate = enc.precision_gate
    assert gate is not None and gate.decision == "fp32" and gate.probe_diff is None
    assert spy.seen and not any(spy.seen)
    np.testing.assert_array_equal(out, fp32_text.encode(SENTENCES))


def test_gate_decides_once() -> None:
    calls: list[torch.dtype | None] = []

    def probe(dtype: torch.dtype | None) -> torch.Tensor:
        calls.append(dtype)
        return torch.ones(4) / 2

    gate = PrecisionGate("bf16", "cpu", model="constant")
    assert gate.dtype(probe) is torch.bfloat16
    assert gate.dtype(probe) is torch.bfloat16
    assert calls == [None, torch.bfloat16] and gate.probe_diff == 0.0
