"""build_feature_bank on the real datasets with stand-in encoders (no model weights).

The 4Q feature cache is written beforehand under the name ``fourq_features`` looks for, so
no audio is decoded; the text encoder returns deterministic pseudo-features.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from storycue.config import Settings
from storycue.data.fourq import load_fourq
from storycue.data.splits import split_fourq
from storycue.errors import ModelMismatchError
from storycue.models.features import fourq_cache_path
from storycue.training.families.base import build_feature_bank

pytestmark = pytest.mark.data


class FakeEncoder:
    name = "fake-encoder"
    pooling = "mean"

    def encode(self, texts: Sequence[str], allow_truncation: bool = True) -> np.ndarray:
        out = np.stack(
            [
                np.random.default_rng(zlib.crc32(t.encode())).normal(size=8).astype(np.float32)
                for t in texts
            ]
        )
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


class FakeBackbone:
    name = "fake-backbone"
    version = "0"
    feature_dims: ClassVar[dict[str, int]] = {"a": 3, "b": 2}


def test_build_feature_bank_from_cached_features(real_data_dir: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=real_data_dir, home=tmp_path / "home")
    bb = FakeBackbone()
    with pytest.raises(ModelMismatchError):
        build_feature_bank(settings, FakeEncoder(), bb, tmp_path, require_audio_cache=True)
    split = split_fourq(load_fourq(settings=settings))
    n = len(split.train) + len(split.validation) + len(split.test)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, 3)).astype(np.float32)
    a[5] = np.nan  # one clip failed to decode
    np.savez(
        fourq_cache_path(split, bb, tmp_path),
        __failed__=np.array(json.dumps([5])),
        a=a,
        b=rng.normal(size=(n, 2)).astype(np.float32),
    )
    bank = build_feature_bank(
        settings,
        FakeEncoder(),
        bb,
        tmp_path,
        audio_features=["b", "a"],
        text_parts=("train", "validation"),
        require_audio_cache=True,
    )
    assert set(bank.text) == {"train", "validation"}
    assert bank.audio_dim == 5 and bank.text_dim == 8
    assert sum(len(m) for m in bank.music.values()) == n - 1
    assert bank.data["fourq_split"]["fingerprint"] == split.fingerprint
    assert set(bank.taxonomies) == {"goemotions", "isear"}
    assert len(bank.text_labels) == 8
    train = bank.text["train"]
    assert {"isear", "goemotions", "emobank"} == set(train.sources)
    assert np.isfinite(train.va).all()
    assert len(bank.tags) > 100 and bank.word_dim == 8
    assert np.isfinite(bank.music["train"].tag_va).all()
    # text features came through the shared cache, keyed like VA training's
    assert any(p.name.startswith("text-fake-encoder-mean-va-train-") for p in tmp_path.iterdir())
