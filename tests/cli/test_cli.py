"""The ``storycue`` command line, run in-process with typer's runner on embedded stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from storycue.cli import app
from storycue.config import get_settings
from storycue.errors import InvalidInputError, TextDecodeError
from storycue.pipeline.engine import read_story_file, spread
from storycue.storage.factory import close_vector_stores

runner = CliRunner()


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh STORYCUE_HOME and no data folder for each test."""
    monkeypatch.setenv("STORYCUE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STORYCUE_DATA_DIR", str(tmp_path / "no-data"))
    get_settings.cache_clear()
    yield tmp_path
    close_vector_stores()
    get_settings.cache_clear()


def write_tone(path: Path, seconds: float = 4.0, freq: float = 330.0) -> None:
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)


def test_models_lists_the_shipped_default(env: Path) -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    names = {r["identity"]["name"] for r in rows}
    assert get_settings().emotion_model in names
    assert all(r["identity"]["dim"] > 0 and r["identity"]["version"] for r in rows)
    # exactly one row is the default: the checkpoint the name resolves to (the newest
    # shipped version), not every version that shares its name
    from storycue.models.checkpoints import checkpoint_info, resolve_checkpoint

    defaults = [r for r in rows if r["default"]]
    want = checkpoint_info(resolve_checkpoint(get_settings().emotion_model))
    assert len(defaults) == 1
    assert defaults[0]["identity"]["version"] == want.identity.version
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and table.stdout.count("*") == 1


def test_ingest_and_match_json(env: Path) -> None:
    music = env / "music"
    music.mkdir()
    for i, f in enumerate((220.0, 440.0, 880.0)):
        write_tone(music / f"tone{i}.wav", freq=f)
    (music / "broken.mp3").write_bytes(b"ID3 not really an mp3")
    result = runner.invoke(app, ["ingest", str(music), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["embedded"] == 3
    assert [Path(f["uri"]).name for f in report["failed"]] == ["broken.mp3"]
    again = json.loads(runner.invoke(app, ["ingest", str(music), "--json"]).stdout)
    assert again["embedded"] == 0 and again["already_present"] == 3

    story = env / "story.txt"
    story.write_text("The storm raged.\n\nThen the sun came out and they laughed.", "utf-8")
    result = runner.invoke(app, ["match", "--file", str(story), "--top-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    sheet = json.loads(result.stdout)
    assert sheet["model"]["name"] == get_settings().emotion_model
    assert all(len(seg["tracks"]) == 2 for seg in sheet["segments"])


def test_match_needs_exactly_one_story_source(env: Path) -> None:
    result = runner.invoke(app, ["match"])
    assert result.exit_code == 2
    assert "either as TEXT or with --file" in result.output


def test_match_before_ingest_says_what_to_do(env: Path) -> None:
    result = runner.invoke(app, ["match", "A quiet goodbye."])
    assert result.exit_code == 2
    assert "storycue ingest" in result.output


def test_story_files_must_be_utf8_text(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Déjà vu, naïve café".encode("latin-1"))
    with pytest.raises(TextDecodeError, match="not UTF-8"):
        read_story_file(latin, 1000)
    binary = tmp_path / "junk.txt"
    binary.write_bytes(b"abc\x00\x01\x02")
    with pytest.raises(TextDecodeError, match="binary"):
        read_story_file(binary, 1000)
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffOnce upon a time".encode())
    assert read_story_file(bom, 1000) == "Once upon a time"
    with pytest.raises(InvalidInputError, match="limit"):
        read_story_file(bom, 5)
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_story_file(tmp_path / "missing.txt", 1000)


def test_ten_megabyte_story_is_rejected_or_read_never_truncated(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("It was a dark and stormy night. " * 330_000, "utf-8")
    assert big.stat().st_size > 10_000_000
    assert len(read_story_file(big, 20_000_000)) == big.stat().st_size
    with pytest.raises(InvalidInputError):
        read_story_file(big, 1_000_000)


def test_demo_runs_end_to_end_on_synthetic_clips(env: Path) -> None:
    result = runner.invoke(app, ["demo", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.stdout
    for title in ("A Christmas Carol", "The Little Match Girl", "The Ugly Duckling",
                  "The Tell-Tale Heart"):  # fmt: skip
        assert title in result.stdout
    # Multi-scene cue sheets: every scene of the four stories (5 + 3 + 4 + 3) is cued,
    # two tracks each.
    assert result.stdout.count("    emotion: ") == 15
    assert result.stdout.count("synthetic-") >= 30
    assert "[5] Running to the window" in result.stdout


def test_spread_takes_files_evenly_across_folders() -> None:
    files = [Path(f"Q{q}/{i}.mp3") for q in range(1, 5) for i in range(5)]
    picked = spread(files, 6)
    assert len(picked) == 6
    assert {p.parent.name for p in picked} == {"Q1", "Q2", "Q3", "Q4"}


def test_progress_without_a_terminal_is_plain_lines_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`evaluate --json` on a long gallery: progress goes to stderr as plain lines (no
    terminal in a log or CI), at most one per tenth plus the last, stdout stays clean."""
    from storycue.cli import _progress, _stage_reporter

    with _progress() as progress:
        report = _stage_reporter(progress)
        for done in range(1, 249):
            report("gallery audio features", done, 248)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("gallery audio features")]
    assert captured.out == ""
    assert lines[0] == "gallery audio features: 1/248"
    assert lines[-1] == "gallery audio features: 248/248"
    assert 10 <= len(lines) <= 13
