"""Malformed Kafka messages and adversarial audio through the ingest consumer: each one is
dead-lettered with a code and a reason, its offset committed, and the stores untouched;
the consumer never stops or hangs (it runs with a message count and an idle timeout)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from badcorpus import KAFKA_MALFORMED, adversarial_audio

from storycue.config import IngestSourceSettings, QueueSettings, Settings
from support.kafka import read_topic, unique_kafka
from support.tansu import TansuBroker, tansu_broker


@pytest.fixture(scope="module")
def tansu() -> Iterator[TansuBroker]:
    with tansu_broker() as broker:
        yield broker


def _settings(tmp_path: Path, tansu: TansuBroker, root: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        kafka=unique_kafka(
            tansu.bootstrap_servers, session_timeout_ms=6000, heartbeat_interval_ms=2000
        ),
        sources=IngestSourceSettings(allowed_roots=[root]),
        queue=QueueSettings(task_max_retries=1, task_retry_backoff_s=0.05),
        device="cpu",
    )


def _read(settings: Settings, topic: str, expect: int, timeout_s: float = 30.0) -> list[Any]:
    """``expect`` records of ``topic`` (dead letters carry whole bad messages: large)."""
    return read_topic(
        settings,
        topic,
        expect,
        timeout_s,
        linger_ms=0,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )


@pytest.mark.timeout(300)
def test_malformed_messages_and_bad_audio_are_dead_lettered(
    tmp_path: Path, tansu: TansuBroker
) -> None:
    from kafka import KafkaProducer

    from storycue.context import close_contexts, get_context
    from storycue.events.consumer import (
        DLQ_CODE,
        DLQ_OFFSET,
        DLQ_REASON,
        DLQ_VALUE_DROPPED,
        IngestConsumer,
    )
    from storycue.events.kafka import client_config, ensure_topics, publish_track_events
    from storycue.events.schemas import TrackEvent
    from storycue.storage.factory import close_vector_stores

    root = tmp_path / "audio"
    files = adversarial_audio(root)
    s = _settings(tmp_path, tansu, root)
    ensure_topics(s, partitions=2)
    prod = KafkaProducer(max_request_size=4 * 1024 * 1024, **client_config(s.kafka))
    sent: dict[int, str] = {}
    try:
        for name, key, value in KAFKA_MALFORMED:
            prod.send(s.kafka.topic_tracks, key=key, value=value).get(30)
            sent[len(sent)] = name
    finally:
        prod.close()
    events = [
        TrackEvent(
            type="track.added",
            tenant="acme",
            catalogue="bad",
            track_key=name.replace("/", "_"),
            uri=str(path),
        )
        for name, path in files.items()
        if name != "truncated.mp3"  # may hold a usable stream (see test_audio)
    ]
    events.append(
        TrackEvent(
            type="track.added",
            tenant="acme",
            catalogue="bad",
            track_key="outside",
            uri="/etc/passwd",
        )
    )
    events.append(
        TrackEvent(
            type="track.added",
            tenant="acme",
            catalogue="bad",
            track_key="gone",
            uri=str(root / "gone.wav"),
        )
    )
    assert publish_track_events(events, s) == len(events)
    total = len(KAFKA_MALFORMED) + len(events)

    consumer = IngestConsumer(s)
    try:
        consumer.run(max_messages=total, idle_timeout_s=30)
    finally:
        consumer.close()
    assert consumer.stats.embedded == 0
    assert consumer.stats.dead_lettered == total, consumer.stats

    dlq = _read(s, s.kafka.topic_dead_letter, total)
    assert len(dlq) == total
    codes: dict[str, int] = {}
    for rec in dlq:
        h = dict(rec.headers)
        code, reason = h[DLQ_CODE].decode(), h[DLQ_REASON].decode()
        assert code and reason and DLQ_OFFSET in h
        codes[code] = codes.get(code, 0) + 1
    malformed = sum(v for k, v in codes.items() if k in ("malformed", "key_mismatch"))
    assert malformed == len(KAFKA_MALFORMED), codes
    assert "internal_error" not in codes, codes
    # The message over 1 MB could not be copied: dead-lettered without its value.
    dropped = [r for r in dlq if DLQ_VALUE_DROPPED in dict(r.headers)]
    assert len(dropped) == 1 and dropped[0].value is None

    rt = get_context(s)
    try:
        assert rt.tenancy.catalogues("acme") == [] or all(
            rt.metadata.count_tracks(c.id) == 0 for c in rt.tenancy.catalogues("acme")
        )
    finally:
        close_contexts()
        close_vector_stores()
    print(f"\ndead-letter codes: {codes}")  # noqa: T201
