"""Reading Kafka topics back in tests (kafka-python): every record of a topic, and the
number of messages a consumer group has committed."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from storycue.config import Settings
from storycue.events.kafka import client_config


def read_topic(settings: Settings, topic: str, expect: int, timeout_s: float = 20.0) -> list[Any]:
    """Records of ``topic`` from the start, until ``expect`` were read or ``timeout_s``
    passed, plus whatever arrives within one more second (to see extra records too)."""
    c = KafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_config(settings.kafka),
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for recs in c.poll(500).values():
                out.extend(recs)
        for recs in c.poll(1000).values():
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
