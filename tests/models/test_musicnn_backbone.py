"""Loading musicnn backbones and embedding whole tracks."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from storycue.audio.mel import MelFrontend
from storycue.errors import ConfigurationError, InvalidInputError, ModelNotFoundError
from storycue.models.musicnn import (
    BACKBONES,
    MusicnnBackbone,
    clear_backbone_cache,
    load_backbone,
)


@pytest.fixture(scope="module")
def mtt(musicnn_weights_dir: Path) -> MusicnnBackbone:
    return load_backbone("MTT_musicnn", weights_dir=musicnn_weights_dir, device="cpu")


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def test_registry() -> None:
    assert set(BACKBONES) == {"MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"}
    assert BACKBONES["MSD_vgg"].feature_dims == {"tags": 50, "pool5": 256}


def test_unknown_backbone() -> None:
    with pytest.raises(ModelNotFoundError, match="MTT_musicnn"):
        load_backbone("MTT_resnet")


def test_missing_weights_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        load_backbone("MTT_musicnn", weights_dir=tmp_path / "nowhere")
    with pytest.raises(ConfigurationError, match="STORYCUE_MUSICNN_WEIGHTS_DIR"):
        load_backbone("MTT_musicnn", weights_dir=tmp_path)  # exists, but no checkpoints


def test_identity_and_dims(mtt: MusicnnBackbone) -> None:
    assert mtt.name == "MTT_musicnn" and mtt.version == "musicnn-0.1.0"
    assert mtt.identity == "MTT_musicnn@musicnn-0.1.0"
    assert mtt.feature_dims == {
        "tags": 50, "mean_pool": 753, "max_pool": 753, "penultimate": 200, "tags_max": 50
    }  # fmt: skip
    assert len(mtt.labels) == 50 and mtt.labels[0] == "guitar"


def test_cached_and_thread_safe(musicnn_weights_dir: Path) -> None:
    clear_backbone_cache()
    results: list[MusicnnBackbone] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                load_backbone("MTT_vgg", weights_dir=musicnn_weights_dir, device="cpu")
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert (
        load_backbone("MTT_vgg", weights_dir=str(musicnn_weights_dir), device="cpu") is results[0]
    )


def test_embed_waveform_is_the_mean_over_patches(mtt: MusicnnBackbone) -> None:
    wave = noise(10.0)  # 626 frames: 3 full patches + a 65-frame tail (dropped, < half)
    feats = mtt.embed_waveform(wave, batch_size=2)
    assert set(feats) == set(mtt.feature_dims)
    for key, dim in mtt.feature_dims.items():
        assert feats[key].shape == (dim,) and feats[key].dtype == np.float32
    logmel = MelFrontend()(torch.from_numpy(wave))[0]
    patches = MelFrontend.patches(logmel)
    assert patches.shape[0] == 3
    per_patch = mtt.forward_patches(patches)
    for key in ("tags", "mean_pool", "max_pool", "penultimate"):
        np.testing.assert_allclose(feats[key], per_patch[key].mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(feats["tags_max"], per_patch["tags"].amax(0).numpy(), atol=1e-6)
    # batch size does not change the result
    again = mtt.embed_waveform(wave, batch_size=64)
    np.testing.assert_allclose(again["penultimate"], feats["penultimate"], atol=1e-5)


def test_short_clip_is_padded_to_one_patch(mtt: MusicnnBackbone) -> None:
    feats = mtt.embed_waveform(noise(1.2))
    assert feats["tags"].shape == (50,)
    assert ((feats["tags"] > 0) & (feats["tags"] < 1)).all()
    with pytest.raises(InvalidInputError, match="too short"):
        mtt.embed_waveform(noise(1.2), policy="exact")


def test_different_audio_different_embeddings(mtt: MusicnnBackbone) -> None:
    t = np.arange(5 * 16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    a = mtt.embed_waveform(tone)["penultimate"]
    b = mtt.embed_waveform(noise(5.0))["penultimate"]
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos < 0.99


def test_bad_waveforms_are_refused(mtt: MusicnnBackbone) -> None:
    with pytest.raises(InvalidInputError, match="mono 1-D"):
        mtt.embed_waveform(np.zeros((2, 16000), np.float32))
    with pytest.raises(InvalidInputError, match="empty"):
        mtt.embed_waveform(np.zeros(0, np.float32))
    bad = noise(2.0)
    bad[5] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        mtt.embed_waveform(bad)
    with pytest.raises(InvalidInputError, match="float"):
        mtt.embed_waveform(np.zeros(16000, np.int16))
    with pytest.raises(InvalidInputError, match=r"\[N, 187, 96\]"):
        mtt.forward_patches(torch.zeros(2, 187, 40))


def test_vgg_needs_187_frames(musicnn_weights_dir: Path) -> None:
    vgg = load_backbone("MSD_vgg", weights_dir=musicnn_weights_dir, device="cpu")
    out = vgg.forward_patches(torch.zeros(3, 187, 96))
    assert out["pool5"].shape == (3, 256) and out["tags"].shape == (3, 50)
    with pytest.raises(InvalidInputError, match="187-frame"):
        vgg.forward_patches(torch.zeros(1, 100, 96))
    assert vgg.embed_waveform(noise(4.0))["pool5"].shape == (256,)


def test_cpu_micro_batching_does_not_change_outputs(mtt: MusicnnBackbone) -> None:
    x = torch.rand(20, 48, 96) * 3  # musicnn takes shorter patches too; 20 > the CPU micro-batch
    out = mtt.forward_patches(x)
    with torch.inference_mode():
        whole = mtt.net(x)
    for key in ("tags", "penultimate", "max_pool"):
        assert out[key].shape[0] == 20
        torch.testing.assert_close(out[key], whole[key], atol=1e-5, rtol=1e-5)
