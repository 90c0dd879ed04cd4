"""Kafka in tests (kafka-python): settings with topics of their own, every record of a
topic read back, and the number of messages a consumer group has committed."""

from __future__ import annotations

import time
import uuid
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from storycue.config import KafkaSettings, Settings
from storycue.events.kafka import client_config


def unique_kafka(bootstrap_servers: str, group: str = "ingest", **options: Any) -> KafkaSettings:
    """Settings whose three topics and consumer group carry a random tag, so tests sharing
    a broker never read each other's messages; ``options`` are further KafkaSettings."""
    tag = uuid.uuid4().hex[:8]
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        topic_tracks=f"tracks-{tag}",
        topic_embedded=f"embedded-{tag}",
        topic_dead_letter=f"dlq-{tag}",
        group_id=f"{group}-{tag}",
        **options,
    )


def read_topic(
    settings: Settings,
    topic: str,
    expect: int,
    timeout_s: float = 20.0,
    *,
    linger_ms: int = 1000,
    **consumer_options: Any,
) -> list[Any]:
    """Records of ``topic`` from the start, until ``expect`` were read or ``timeout_s``
    passed, plus whatever arrives within ``linger_ms`` more (to see extra records too);
    ``consumer_options`` go to the consumer (fetch sizes for large records)."""
    c = KafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **consumer_options,
        **client_config(settings.kafka),
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for recs in c.poll(500).values():
                out.extend(recs)
        if linger_ms > 0:
            for recs in c.poll(linger_ms).values():
                out.extend(recs)
    finally:
        c.close()
    return out


def committed_total(settings: Settings, topic: str | None = None) -> int:
    """Sum of the group's committed offsets over ``topic``'s partitions (default: the tracks
    topic), which is the number of messages the group has finished.

    (Compared with the number of messages published: Tansu's ListOffsets answers the base
    offset of the last record batch, so end offsets are not a reliable total there.)
    """
    k = settings.kafka
    topic = topic or k.topic_tracks
    c = KafkaConsumer(group_id=k.group_id, enable_auto_commit=False, **client_config(k))
    try:
        parts = c.partitions_for_topic(topic) or set()
        return sum(c.committed(TopicPartition(topic, p)) or 0 for p in parts)
    finally:
        c.close()
