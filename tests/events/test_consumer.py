"""The ingest consumer against a real Kafka-protocol broker (Tansu) and real stores.

SQLite and Qdrant's local mode under a temporary home stand in for PostgreSQL and a Qdrant
server here (the same code paths apart from the URLs); the multi-process test in
tests/integration runs the PostgreSQL path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storycue.config import Settings
from storycue.context import get_context
from storycue.events.consumer import DLQ_CODE, DLQ_OFFSET, DLQ_REASON, IngestConsumer
from storycue.events.kafka import ensure_topics, make_producer, publish_track_events
from storycue.events.schemas import TrackEvent
from support.kafka import committed_total, read_topic

TENANT, CATALOGUE = "acme", "moods"


def _added(path: Path, key: str, kind: str = "track.added") -> TrackEvent:
    return TrackEvent(
        type=kind,  # type: ignore[arg-type]
        tenant=TENANT,
        catalogue=CATALOGUE,
        track_key=key,
        uri=str(path),
        metadata={"title": key, "tags": ["test"]},  # type: ignore[arg-type]
    )


def _counts(settings: Settings) -> tuple[int, int]:
    rt = get_context(settings)
    cat = rt.tenancy.catalogue(TENANT, CATALOGUE)
    tracks = rt.metadata.count_tracks(cat.id)
    model = rt.load_model()
    return tracks, rt.vectors.count(model.identity)


def test_events_are_embedded_once_and_bad_ones_dead_lettered(
    event_settings: Settings, audio_dir: Path, clips: list[Path]
) -> None:
    s = event_settings
    ensure_topics(s, partitions=2)
    events = [
        _added(clips[0], "a"),
        _added(clips[1], "b"),
        _added(clips[0], "a"),  # replayed event: nothing new
        _added(audio_dir / "notes.wav", "junk"),  # not audio -> DLQ
        _added(Path("/etc/passwd"), "evil"),  # outside the allowed roots -> DLQ
        _added(clips[2], "c"),
    ]
    publish_track_events(events, s)
    prod = make_producer(s)
    for raw in (b"{this is not json", b'{"type": "track.exploded"}'):
        prod.send(s.kafka.topic_tracks, key=b"acme/moods/x", value=raw).get(10)
    prod.close()

    consumer = IngestConsumer(s)
    try:
        consumer.run(max_messages=len(events) + 2, idle_timeout_s=30)
        committed = committed_total(s)
    finally:
        consumer.close()

    assert consumer.stats.embedded == 4  # a, b, a (again), c
    assert consumer.stats.dead_lettered == 4
    assert committed == 8  # every offset committed, nothing blocked
    assert _counts(s) == (3, 3)  # three distinct clips: one row and one vector each

    dlq = read_topic(s, s.kafka.topic_dead_letter, 4)
    assert len(dlq) == 4
    reasons = {
        dict(r.headers)[DLQ_CODE].decode(): dict(r.headers)[DLQ_REASON].decode() for r in dlq
    }
    assert "malformed" in reasons
    assert any("allowed roots" in r for r in reasons.values())
    assert all(DLQ_OFFSET in dict(r.headers) for r in dlq)
    embedded = read_topic(s, s.kafka.topic_embedded, 4)
    assert sorted(r.key for r in embedded) == [b"acme/moods/a"] * 2 + [
        b"acme/moods/b",
        b"acme/moods/c",
    ]

    # Removal deletes the row and the vector; replaying it changes nothing.
    remove = _added(clips[1], "b", "track.removed")
    publish_track_events([remove, remove], s)
    consumer = IngestConsumer(s)
    try:
        consumer.run(max_messages=2, idle_timeout_s=30)
    finally:
        consumer.close()
    assert consumer.stats.removed == 1
    assert _counts(s) == (2, 2)


def test_offsets_are_committed_only_after_the_writes(
    event_settings: Settings, clips: list[Path]
) -> None:
    s = event_settings
    ensure_topics(s, partitions=1)
    publish_track_events([_added(clips[0], "a"), _added(clips[3], "d")], s)

    # A member whose database is down: it retries, is stopped, and commits nothing.
    down = s.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:9/none"})
    broken = IngestConsumer(down)
    broken._sleep = lambda _s: broken.stop()  # stop while backing off from the failure
    try:
        broken.run(idle_timeout_s=30)
        committed = committed_total(s)
    finally:
        broken.close()
    assert broken.stats.retried >= 1 and broken.stats.processed == 0
    assert committed == 0

    # The next member of the group gets both messages again and stores them.
    healthy = IngestConsumer(s)
    try:
        healthy.run(max_messages=2, idle_timeout_s=30)
        committed = committed_total(s)
    finally:
        healthy.close()
    assert healthy.stats.embedded == 2 and healthy.stats.dead_lettered == 0
    assert committed == 2
    assert _counts(s) == (2, 2)


def test_the_next_event_is_fetched_while_this_one_is_embedded(
    event_settings: Settings, audio_dir: Path, clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within a poll, event n+1's audio is fetched and decoded (no database touched) before
    event n goes through the model; a bad file fetched ahead still dead-letters, a removal
    is not fetched, and every event's outcome is what it is without fetching ahead."""
    import storycue.events.consumer as consumer_mod
    import storycue.jobs.ingest as ingest_mod

    s = event_settings
    ensure_topics(s, partitions=1)  # one partition: the events come in one poll, in order
    removal = _added(clips[0], "a", "track.removed")
    events = [
        _added(clips[0], "a"),
        _added(audio_dir / "notes.wav", "junk"),
        _added(clips[1], "b"),
        removal,
        _added(clips[2], "c"),
    ]
    publish_track_events(events, s)

    calls: list[str] = []
    fetch, store = ingest_mod.fetch_audio, ingest_mod.store_prepared

    def spy_fetch(settings: Settings, uri: str) -> object:
        calls.append(f"fetch {Path(uri).name}")
        return fetch(settings, uri)

    def spy_store(*args: object) -> object:
        calls.append(f"embed {Path(args[-1].source.uri).name}")  # type: ignore[attr-defined]
        return store(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(consumer_mod, "fetch_audio", spy_fetch)
    monkeypatch.setattr("storycue.jobs.ingest.store_prepared", spy_store)
    consumer = IngestConsumer(s)
    batches: list[int] = []  # how many records each poll gave (fetching ahead is per poll)
    poll = consumer.consumer.poll

    def counting_poll(*args: object, **kwargs: object) -> object:
        got = poll(*args, **kwargs)  # type: ignore[arg-type]
        if got:
            batches.append(sum(len(v) for v in got.values()))
        return got

    consumer.consumer.poll = counting_poll  # type: ignore[method-assign]
    try:
        consumer.run(max_messages=len(events), idle_timeout_s=30)
    finally:
        consumer.close()

    names = [Path(e.uri).name for e in events]
    embeds = {0, 2, 4}  # event 1 is not audio, event 3 a removal
    expected: list[str] = []
    first = 0
    for size in batches:
        for i in range(first, first + size):
            if i + 1 < first + size and events[i + 1].type != "track.removed":
                expected.append(f"fetch {names[i + 1]}")  # before event i is handled
            if i in embeds:
                expected.append(f"embed {names[i]}")
        first += size
    assert sum(batches) == len(events)
    assert calls == expected
    if batches == [len(events)]:  # the usual case: one poll gives all five
        assert calls[:3] == ["fetch notes.wav", "embed clip0.wav", "fetch clip1.wav"]
    assert consumer.stats.embedded == 3 and consumer.stats.dead_lettered == 1
    assert consumer.stats.removed == 1
    assert _counts(s) == (2, 2)  # clip0 removed again; clip1 and clip2 stay
