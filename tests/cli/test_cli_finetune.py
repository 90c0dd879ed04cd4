"""``storycue finetune`` and ``train --text-encoder`` from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storycue.cli import app
from storycue.config import Settings, get_settings
from storycue.models.finetuned import EncoderDelta, find_delta

runner = CliRunner()


def flat(text: str) -> str:
    """Rich wraps long lines: compare on single-spaced text."""
    return " ".join(text.split())


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STORYCUE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_finetune_text_on_the_real_data_writes_a_loadable_delta(
    home: Path, real_data_dir: Path
) -> None:
    result = runner.invoke(
        app,
        ["finetune", "text", "--layers", "1", "--epochs", "1", "--max-examples", "48",
         "--max-validation", "32", "--batch-size", "16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = list((home / "models" / "encoders").glob("*.safetensors"))
    assert len(files) == 1
    delta = EncoderDelta.load(files[0])
    assert delta.name in flat(result.output)
    assert delta.info["examples"] == {"train": 48, "validation": 32}
    assert delta.info["data"]["sources"] == ["isear", "goemotions", "emobank"]
    assert delta.info["data"]["isear_split_fingerprint"]
    assert find_delta(delta.name, "text").path == files[0]


def test_finetune_audio_from_a_mel_bank(home: Path, tmp_path: Path) -> None:
    from storycue.models.musicnn import resolve_weights_dir
    from storycue.training.finetune import MelBank

    try:
        resolve_weights_dir()
    except Exception as exc:  # ConfigurationError: the musicnn wheel is not installed
        pytest.skip(f"musicnn weights not available: {exc}")
    rng = np.random.default_rng(0)
    quads = ["Q1", "Q2", "Q3", "Q4"] * 2
    bank = MelBank(
        [rng.uniform(0, 3, (200, 96)).astype(np.float32) for _ in quads],
        quads,
        rng.uniform(0, 1, (8, 2)),
        [f"s{i}" for i in range(8)],
        ["train"] * 4 + ["validation"] * 4,
    )
    mels = bank.save(tmp_path / "mels.npz")
    result = runner.invoke(
        app,
        ["finetune", "audio", "--backbone", "MTT_musicnn", "--mels", str(mels), "--epochs", "1",
         "--batch-size", "4", "--crops-per-clip", "1", "-o", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "out").glob("MTT_musicnn+ft-*.safetensors")
    delta = EncoderDelta.load(path)
    assert delta.kind == "audio" and delta.info["data"] == {"mel_bank": "mels.npz"}


def test_finetune_and_train_refuse_bad_options(home: Path, tmp_path: Path) -> None:
    bad_layers = runner.invoke(app, ["finetune", "text", "--layers", "0"])
    assert bad_layers.exit_code == 2 and "layers" in flat(bad_layers.output)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    bad_bank = runner.invoke(app, ["finetune", "audio", "--mels", str(junk)])
    assert bad_bank.exit_code == 2 and "is not a mel bank (not an .npz" in flat(bad_bank.output)
    unknown = runner.invoke(
        app, ["train", "va", "--text-encoder", "sentence-transformers/all-MiniLM-L6-v2+ft-0000"]
    )
    assert unknown.exit_code == 2 and "not found" in flat(unknown.output)
    bad_choice = runner.invoke(app, ["train", "va", "--finetune", "everything"])
    assert bad_choice.exit_code == 2 and "none, text, audio or both" in flat(bad_choice.output)
    both = runner.invoke(
        app, ["train", "va", "--finetune", "both", "--text-encoder", "all-MiniLM-L6-v2"]
    )
    assert both.exit_code == 2 and "not both" in flat(both.output)
    blind_test = runner.invoke(app, ["train", "va", "--no-evaluate", "--test"])
    assert blind_test.exit_code == 2 and "needs --evaluate" in flat(blind_test.output)
    assert Settings().home == home
