"""Catalogue events published by a client storycue did not write: confluent-kafka
(librdkafka, the C client most platform teams' producers are built on) instead of the
kafka-python helper, with a replay and malformed messages among them.

What a platform team relies on: each track stored exactly once (one row, one vector)
however often its event is delivered; exactly one ``track.embedded`` announcing its
creation (``created: true``; a replay is answered with ``created: false``, which readers
de-duplicate by ``(track_id, model)``, docs/events.md); one dead letter per bad message,
carrying where it came from; every offset committed, so nothing blocks a partition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from storycue.config import Settings
from storycue.context import get_context
from storycue.events.consumer import DLQ_CODE, DLQ_OFFSET, DLQ_PARTITION, IngestConsumer
from storycue.events.kafka import ensure_topics
from storycue.events.schemas import TrackEmbeddedEvent, TrackEvent
from support.kafka import committed_total, read_topic
from support.local import absent

TENANT, CATALOGUE = "acme", "librdkafka"


def _event(path: Path, key: str) -> TrackEvent:
    return TrackEvent(
        type="track.added",
        tenant=TENANT,
        catalogue=CATALOGUE,
        track_key=key,
        uri=str(path),
        metadata={"title": key, "tags": ["librdkafka"]},  # type: ignore[arg-type]
    )


def test_events_from_librdkafka_are_stored_exactly_once_and_bad_ones_dead_lettered(
    event_settings: Settings, audio_dir: Path
) -> None:
    try:
        from confluent_kafka import Producer
    except ImportError:
        absent("confluent-kafka is not installed (the dev extra)")
        raise
    s = event_settings
    ensure_topics(s, partitions=2)
    clips = sorted(audio_dir.glob("clip*.wav"))[:3]
    good = [_event(clip, f"t{i}") for i, clip in enumerate(clips)]
    valid = good[0].to_bytes()
    # (key, value, expected dead-letter code); None: a good message
    messages: list[tuple[bytes, bytes, str | None]] = [
        (good[0].key.encode(), good[0].to_bytes(), None),
        (good[1].key.encode(), good[1].to_bytes(), None),
        (b"acme/librdkafka/x", b"\xff\xfe not utf-8", "malformed"),
        (good[0].key.encode(), good[0].to_bytes(), None),  # replay: the same bytes again
        (b"acme/librdkafka/x", b'{"type": "track.added", "schema_version": 1}', "malformed"),
        (
            b"acme/librdkafka/x",
            json.dumps({**json.loads(valid), "schema_version": 99}).encode(),
            "malformed",
        ),
        (b"acme/librdkafka/someone-else", valid, "key_mismatch"),
        (good[2].key.encode(), good[2].to_bytes(), None),
        (good[1].key.encode(), good[1].to_bytes(), None),  # replay
        (b"acme/librdkafka/x", b"[1, 2, 3]", "malformed"),
    ]
    producer = Producer(
        {
            "bootstrap.servers": s.kafka.bootstrap_servers,
            "enable.idempotence": True,  # acks=all, ordered, de-duplicated retries
            "linger.ms": 5,
        }
    )
    delivered: list[tuple[int, int, int]] = []  # (message index, partition, offset)
    errors: list[str] = []

    def report(i: int) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                delivered.append((i, msg.partition(), msg.offset()))

        return on_delivery

    for i, (key, value, _) in enumerate(messages):
        producer.produce(
            s.kafka.topic_tracks,
            key=key,
            value=value,
            headers=[("storycue.type", b"track.added")],
            on_delivery=report(i),
        )
    assert producer.flush(30) == 0 and errors == [], errors
    del producer  # librdkafka's threads end with the handle
    assert len(delivered) == len(messages)

    consumer = IngestConsumer(s)
    try:
        consumer.run(max_messages=len(messages), idle_timeout_s=30)
    finally:
        consumer.close()
    bad = {i: code for i, (_, _, code) in enumerate(messages) if code is not None}
    assert consumer.stats.dead_lettered == len(bad)
    assert consumer.stats.embedded == len(messages) - len(bad)
    assert committed_total(s) == len(messages)  # every offset, nothing blocked

    # Exactly-once storage: three clips, three rows, three vectors.
    rt = get_context(s)
    cat = rt.tenancy.catalogue(TENANT, CATALOGUE)
    assert rt.metadata.count_tracks(cat.id) == len(clips)
    assert rt.vectors.count(rt.load_model().identity) == len(clips)

    # One creation announced per track; the replays answered, not re-created.
    embedded = [
        TrackEmbeddedEvent.model_validate_json(r.value)
        for r in read_topic(s, s.kafka.topic_embedded, consumer.stats.embedded)
    ]
    assert len(embedded) == consumer.stats.embedded
    created = sorted(e.track_key for e in embedded if e.created)
    assert created == sorted(e.track_key for e in good)
    assert len({(e.track_id, e.model) for e in embedded}) == len(clips)
    by_event = {e.source_event_id for e in embedded}
    assert by_event == {e.event_id for e in good}  # replays carry the replayed event's id

    # A dead letter per bad message, pointing back at it.
    dlq = read_topic(s, s.kafka.topic_dead_letter, len(bad))
    assert len(dlq) == len(bad)
    where = {(p, o): i for i, p, o in delivered}
    got = {}
    for r in dlq:
        h = {k: v.decode() for k, v in r.headers}
        got[where[(int(h[DLQ_PARTITION]), int(h[DLQ_OFFSET]))]] = h[DLQ_CODE]
    assert got == bad  # each bad message once, with its reason; no good one
