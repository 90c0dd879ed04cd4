"""Fixtures of the event tests: a Tansu broker, settings on throw-away stores, audio files."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from storycue.config import Settings
from support.tansu import TansuBroker, tansu_broker


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    """A Tansu (Kafka-compatible) broker on a free port, in memory, for the session."""
    with tansu_broker() as broker:
        yield broker


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    """Four distinct 3 s WAV clips (sines of different pitch) and a text file."""
    folder = tmp_path / "audio"
    folder.mkdir()
    t = np.arange(16_000 * 3) / 16_000
    for i, f in enumerate((220.0, 330.0, 440.0, 660.0)):
        wave = (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)
        sf.write(folder / f"clip{i}.wav", wave, 16_000)
    (folder / "notes.wav").write_bytes(b"this is not audio at all")
    return folder


@pytest.fixture
def clips(audio_dir: Path) -> list[Path]:
    """The four clips of :func:`audio_dir`, in pitch order."""
    return sorted(audio_dir.glob("clip*.wav"))


@pytest.fixture
def event_settings(tmp_path: Path, tansu: TansuBroker, audio_dir: Path) -> Settings:
    """Settings on SQLite + local Qdrant under tmp_path, unique topics and group."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        home=tmp_path / "home",
        kafka={
            "bootstrap_servers": tansu.bootstrap_servers,
            "topic_tracks": f"tracks-{tag}",
            "topic_embedded": f"embedded-{tag}",
            "topic_dead_letter": f"dlq-{tag}",
            "group_id": f"ingest-{tag}",
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 2000,
        },
        sources={"allowed_roots": [audio_dir]},
        queue={"task_max_retries": 2, "task_retry_backoff_s": 0.05},
        device="cpu",
    )
