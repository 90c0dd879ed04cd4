"""The ONNX Runtime text path agrees with PyTorch, caches its export, and is chosen by settings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from storycue.config import get_settings
from storycue.errors import ConfigurationError
from storycue.models.emotion import load_emotion_model
from storycue.models.text import TextEncoder
from storycue.models.text_onnx import MODEL_FILE, OnnxTextModel, export_key, load_onnx_text_model

TOLERANCE = 1e-5

SHORT = "Rain."
SENTENCES = [
    "The storm broke over the harbour and the boats pulled at their ropes.",
    "She laughed.",
    "Nobody came to the funeral, not even the brother who had promised to.",
    "A warm evening, music drifting out of every open window along the street.",
    "He waited by the door for hours, listening for footsteps that never came, until "
    "the candle burned down and the room went cold around him.",
    "Joy!",
    "They won the final in the last minute and the whole town poured into the square.",
    "I am afraid of what the letter will say.",
    "The kitten slept in a patch of sun.",
    "Everything was grey: the sky, the sea, the faces on the pier.",
]
LONG = " ".join(SENTENCES + SENTENCES[:9])  # 244 tokens: near the 256-token limit


@pytest.fixture(scope="module")
def torch_encoder() -> TextEncoder:
    return TextEncoder(backend="torch", batch_size=32)


@pytest.fixture(scope="module")
def onnx_encoder() -> TextEncoder:
    enc = TextEncoder(backend="onnx", batch_size=32)
    enc.model()  # exports on first use into the session's STORYCUE_HOME
    return enc


def test_onnx_runs_onnxruntime_not_torch(onnx_encoder: TextEncoder) -> None:
    loaded = onnx_encoder.model()
    assert isinstance(loaded.model, OnnxTextModel)
    assert loaded.model.path.is_file() and loaded.model.path.name == MODEL_FILE
    assert loaded.model.path.is_relative_to(get_settings().home / "cache" / "onnx")
    assert onnx_encoder.dim == 384 and onnx_encoder.max_tokens == 256


@pytest.mark.parametrize(
    ("texts", "batch_size"),
    [
        ([SHORT], 32),  # one segment, no padding
        (SENTENCES, 32),  # one batch, padded to the longest
        (SENTENCES, 3),  # several batches of different padded lengths
        ([LONG, SHORT, *SENTENCES[:4]], 2),  # long segment beside very short ones
    ],
    ids=["single", "one-batch", "batches-of-3", "long-and-short"],
)
def test_embeddings_agree_with_torch(
    torch_encoder: TextEncoder, onnx_encoder: TextEncoder, texts: list[str], batch_size: int
) -> None:
    torch_encoder.batch_size = onnx_encoder.batch_size = batch_size
    try:
        want = torch_encoder.encode(texts)
        got = onnx_encoder.encode(texts)
    finally:
        torch_encoder.batch_size = onnx_encoder.batch_size = 32
    assert got.shape == want.shape == (len(texts), 384)
    assert got.dtype == np.float32
    assert np.linalg.norm(got, axis=1) == pytest.approx(1.0, abs=1e-6)
    assert float(np.abs(got - want).max()) <= TOLERANCE
    # The same segment gives the same vector whatever it is batched with.
    alone = onnx_encoder.encode([texts[-1]])[0]
    assert float(np.abs(alone - got[-1]).max()) <= TOLERANCE


def test_emotion_vectors_agree_so_the_identity_stays() -> None:
    """The model identity names the emotion model, not the runtime: its outputs agree."""
    model = load_emotion_model("va-regression")
    want = model.embed_text(SENTENCES)
    torch_enc = model.text_encoder
    # The default model's encoder on ONNX Runtime (a fine-tuned delta exports like its base).
    model_onnx = TextEncoder(model.info.text_encoder, backend="onnx", batch_size=32)
    assert model_onnx.backend == "onnx"
    try:
        model.use_text_encoder(model_onnx)
        got = model.embed_text(SENTENCES)
    finally:
        model.use_text_encoder(torch_enc)
    assert float(np.abs(got - want).max()) <= TOLERANCE


def test_export_is_cached_and_keyed(
    torch_encoder: TextEncoder, onnx_encoder: TextEncoder, tmp_path: Path
) -> None:
    loaded = onnx_encoder.model()
    path = loaded.model.path
    mtime = path.stat().st_mtime_ns

    def no_torch() -> torch.nn.Module:
        raise AssertionError("the cached export must be used without loading PyTorch weights")

    again = load_onnx_text_model(
        onnx_encoder.name,
        onnx_encoder._source,
        loaded.tokenizer,
        no_torch,
        cache_dir=path.parent.parent,
        threads=1,
    )
    assert again.path == path and path.stat().st_mtime_ns == mtime
    assert (path.parent / "export.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # Another identity or input signature means another export.
    names = ["input_ids", "token_type_ids", "attention_mask"]
    base = export_key("m", {"w": "1"}, names)
    assert base == export_key("m", {"w": "1"}, names)
    assert base != export_key("m", {"w": "2"}, names)
    assert base != export_key("m", {"w": "1"}, names[:1] + names[2:])
    # A cache folder that cannot be written is a clear configuration error.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    with pytest.raises(ConfigurationError):
        load_onnx_text_model(
            onnx_encoder.name,
            onnx_encoder._source,
            loaded.tokenizer,
            lambda: torch_encoder.model().model,
            cache_dir=blocked,
        )


def test_backend_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TextEncoder().backend == get_settings().text_backend
    monkeypatch.setenv("STORYCUE_TEXT_BACKEND", "onnx")
    get_settings.cache_clear()
    try:
        assert TextEncoder().backend == "onnx"
        assert TextEncoder(backend="torch").backend == "torch"
    finally:
        monkeypatch.delenv("STORYCUE_TEXT_BACKEND")
        get_settings.cache_clear()
    with pytest.raises(ConfigurationError):
        TextEncoder(backend="tensorflow")  # type: ignore[arg-type]
    assert os.environ.get("STORYCUE_TEXT_BACKEND") is None
