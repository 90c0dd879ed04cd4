"""The Kafka ingest consumer: track events in, vectors and rows out.

One :class:`IngestConsumer` is one member of the consumer group ``Settings.kafka.group_id``
on ``Settings.kafka.topic_tracks``. For each message, in partition order:

1. decode it (:func:`~storycue.events.schemas.decode_track_event`);
2. ``track.added`` / ``track.updated``: decode and embed the audio through the
   :class:`~storycue.pipeline.engine.Engine`, write the vector (Qdrant) and the rows
   (PostgreSQL), then publish ``track.embedded``; ``track.removed``: delete the vectors
   and the rows of the tracks at that URI;
3. commit the message's offset, only now, after both writes.

While the model embeds one track, the next event's audio of the same poll is fetched and
decoded on a second thread (no database is touched ahead of order), so decoding, which
runs on one core, overlaps the backbone's forward pass, which runs on all of them.

A message that can never succeed (malformed, unknown type, unreadable audio, a URI outside
the allowed roots) is copied to the dead-letter topic with its reason in headers and its
offset committed, so it never blocks its partition. A transient failure (database, vector
store or broker unavailable) is retried with backoff from the same offset; after
``Settings.queue.task_max_retries`` tries the message is dead-lettered too. A crash at any
point re-delivers the uncommitted messages to the next member: every write is idempotent
(tracks by content hash, vectors by a point id derived from the track id), so a re-run
never duplicates a track or a vector.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, MessageSizeTooLargeError
from kafka.structs import OffsetAndMetadata, TopicPartition

from storycue.config import Settings, get_settings
from storycue.context import ProcessContext, get_context
from storycue.errors import InvalidInputError, StorycueError
from storycue.events.kafka import client_config, make_producer
from storycue.events.schemas import TrackEmbeddedEvent, TrackEvent, decode_track_event
from storycue.jobs.ingest import (
    FetchedAudio,
    drop_track_if_unreferenced,
    fetch_audio,
    ingest_uri,
    previous_track_id,
    remove_uri,
)
from storycue.log import get_logger
from storycue.metrics import count_kafka_message, set_kafka_lag
from storycue.transient import is_transient

log = get_logger(__name__)

#: Header names of a dead-lettered message (values are UTF-8).
DLQ_REASON = "storycue.dlq.reason"
DLQ_CODE = "storycue.dlq.code"
DLQ_TOPIC = "storycue.dlq.topic"
DLQ_PARTITION = "storycue.dlq.partition"
DLQ_OFFSET = "storycue.dlq.offset"
DLQ_GROUP = "storycue.dlq.group"
DLQ_FAILED_AT = "storycue.dlq.failed_at"
#: Set (to the value's size in bytes) when the value was too large to copy.
DLQ_VALUE_DROPPED = "storycue.dlq.value_dropped"


@dataclass
class ConsumerStats:
    processed: int = 0
    dead_lettered: int = 0
    retried: int = 0
    embedded: int = 0
    removed: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class UnprocessableError(StorycueError):
    """A message that can never be processed; it goes to the dead-letter topic."""

    code = "unprocessable"


class _AssignmentLog(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs the partitions this member gets and loses: ``partitions_assigned`` is the
    moment a new member starts consuming (joining the group can take seconds)."""

    def __init__(self, owner: IngestConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("partitions_revoked", partitions=_names(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner.assigned_at = time.monotonic()
        log.info("partitions_assigned", partitions=_names(assigned))


def _names(partitions: Any) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class IngestConsumer:
    """One consumer-group member; call :meth:`run` (blocks) and :meth:`stop` from elsewhere.

    ``engine`` defaults to one on the configured stores; ``consumer`` and ``producer`` to
    kafka-python clients from ``Settings.kafka`` (injectable for tests and tools).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        context: ProcessContext | None = None,
        consumer: KafkaConsumer | None = None,
        producer: KafkaProducer | None = None,
        retry_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or get_settings()
        k = self.settings.kafka
        self.context = context or get_context(self.settings)
        if consumer is None:
            consumer = KafkaConsumer(
                group_id=k.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=k.session_timeout_ms,
                heartbeat_interval_ms=k.heartbeat_interval_ms,
                max_poll_records=k.max_poll_records,
                **client_config(k),
            )
            consumer.subscribe([k.topic_tracks], listener=_AssignmentLog(self))
        self.consumer = consumer
        self.producer = producer or make_producer(self.settings)
        self.stats = ConsumerStats()
        #: ``time.monotonic()`` of the last partition assignment (``None``: none yet).
        self.assigned_at: float | None = None
        #: The next event's audio, fetched and decoded while this one is embedded, by
        #: ``(topic, partition, offset)`` (:meth:`_fetch_ahead`).
        self._ahead: dict[tuple[str, int, int], Future[FetchedAudio]] = {}
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-fetch")
        self._stop = threading.Event()
        self._sleep = retry_sleep

    # ---- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return after the message in hand (thread- and signal-safe)."""
        self._stop.set()

    def close(self) -> None:
        self._forget_ahead()
        self._fetcher.shutdown(wait=True, cancel_futures=True)
        self.consumer.close(autocommit=False)
        self.producer.close()

    def run(self, *, max_messages: int | None = None, idle_timeout_s: float | None = None) -> None:
        """Consume until :meth:`stop`, ``max_messages`` handled, or ``idle_timeout_s`` with
        nothing to read."""
        handled = 0
        idle_since = time.monotonic()
        log.info("ingest_consumer_started", topic=self.settings.kafka.topic_tracks)
        while not self._stop.is_set():
            batches = self.consumer.poll(timeout_ms=500)
            if not batches:
                if idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                    break
                continue
            idle_since = time.monotonic()
            for tp, records in batches.items():
                for i, record in enumerate(records):
                    if self._stop.is_set():
                        # Rewind so the next poll (or the next member) starts here.
                        self.consumer.seek(tp, record.offset)
                        break
                    if i + 1 < len(records):
                        self._fetch_ahead(records[i + 1])
                    if not self._handle_with_retry(tp, record):
                        # Given up for now (stopping): re-read from this record next time.
                        self.consumer.seek(tp, record.offset)
                        break
                    handled += 1
                    if max_messages is not None and handled >= max_messages:
                        # The rest of the batch was fetched but not handled: rewind.
                        if i + 1 < len(records):
                            self.consumer.seek(tp, records[i + 1].offset)
                        self._stop.set()
                        break
                self._report_lag(tp)
            self._forget_ahead()  # records fetched ahead but not handled (rewound, stopping)
        log.info("ingest_consumer_stopped", **self.stats.__dict__)

    # ---- fetching ahead ----------------------------------------------------------------------
    def _fetch_ahead(self, record: ConsumerRecord) -> None:
        """Start fetching and decoding the audio of ``record`` (the next event of the
        batch) on the fetch thread, so it is ready when the model is done with the current
        one: decoding runs on one core and the backbone on all of them. Touches no
        database (the event's writes stay in order); an event that does not parse or has
        no audio to add is left to :meth:`handle`."""
        try:
            event = decode_track_event(record.value)
        except InvalidInputError:
            return
        if event.type == "track.removed":
            return
        key = (record.topic, record.partition, record.offset)
        if key not in self._ahead:
            self._ahead[key] = self._fetcher.submit(fetch_audio, self.settings, event.uri)

    def _forget_ahead(self) -> None:
        for fut in self._ahead.values():
            fut.cancel()
        self._ahead.clear()

    # ---- one message -------------------------------------------------------------------------
    def _handle_with_retry(self, tp: TopicPartition, record: ConsumerRecord) -> bool:
        q = self.settings.queue
        attempt = 0
        while True:
            try:
                self.handle(record)
            except UnprocessableError as exc:
                self._dead_letter(record, str(exc.detail.get("code", exc.code)), exc.message)
            except Exception as exc:
                if not is_transient(exc) or attempt >= q.task_max_retries:
                    reason = str(exc) if not is_transient(exc) else f"retries exhausted: {exc}"
                    code = exc.code if isinstance(exc, StorycueError) else type(exc).__name__
                    log.error("ingest_message_failed", offset=record.offset, error=reason)
                    self._dead_letter(record, str(code), reason)
                else:
                    attempt += 1
                    self.stats.retried += 1
                    delay = min(q.task_retry_backoff_max_s, q.task_retry_backoff_s * 2**attempt)
                    log.warning(
                        "ingest_retry", offset=record.offset, attempt=attempt, error=str(exc)
                    )
                    self._sleep(delay)
                    if self._stop.is_set():
                        return False
                    continue
            self._commit(tp, record.offset + 1)
            return True

    def handle(self, record: ConsumerRecord) -> TrackEmbeddedEvent | None:
        """Process one record (no commit). Raises :class:`UnprocessableError` for bad input."""
        try:
            event = decode_track_event(record.value)
        except InvalidInputError as exc:
            raise UnprocessableError(exc.message, detail={"code": "malformed"}) from exc
        expected = event.key.encode("utf-8")
        if record.key is not None and record.key != expected:
            raise UnprocessableError(
                f"message key {record.key!r} does not match the event's {expected!r}",
                detail={"code": "key_mismatch"},
            )
        self.stats.by_type[event.type] = self.stats.by_type.get(event.type, 0) + 1
        if event.type == "track.removed":
            self._remove(event)
            self.stats.processed += 1
            count_kafka_message(self.settings.kafka.topic_tracks)
            return None
        fetched = self._ahead.pop((record.topic, record.partition, record.offset), None)
        # errors: transient are retried (a retry fetches again), others dead-lettered
        embedded = self._embed(event, fetched)
        self._publish_embedded(embedded)
        self.stats.processed += 1
        self.stats.embedded += 1
        count_kafka_message(self.settings.kafka.topic_tracks)
        return embedded

    def _embed(
        self, event: TrackEvent, fetched: Future[FetchedAudio] | None = None
    ) -> TrackEmbeddedEvent:
        before = (
            previous_track_id(
                self.context, tenant=event.tenant, catalogue=event.catalogue, uri=event.uri
            )
            if event.type == "track.updated"
            else None
        )
        done = ingest_uri(
            self.context,
            self.settings,
            tenant=event.tenant,
            catalogue=event.catalogue,
            uri=event.uri,
            title=event.metadata.title,
            artist=event.metadata.artist,
            tags=event.metadata.tags,
            fetched=fetched,
        )
        track, emb = done.track, done.embedding
        if before is not None and before != track.id:
            # New content at the URI: the track it held before goes (vectors first).
            drop_track_if_unreferenced(self.context, before)
        return TrackEmbeddedEvent(
            tenant=event.tenant,
            catalogue=event.catalogue,
            track_key=event.track_key,
            source_event_id=event.event_id,
            uri=event.uri,
            track_id=track.id,
            catalogue_id=track.catalogue_id,
            content_hash=track.content_hash,
            created=done.embedded_now,
            model=done.model_key,
            collection=emb.collection,
            point_id=emb.point_id,
            valence=emb.valence,
            arousal=emb.arousal,
        )

    def _remove(self, event: TrackEvent) -> None:
        self.stats.removed += remove_uri(
            self.context, tenant=event.tenant, catalogue=event.catalogue, uri=event.uri
        )

    # ---- output ------------------------------------------------------------------------------
    def _send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Send one record and wait for the broker's acknowledgement (every in-sync replica,
        :func:`~storycue.events.kafka.producer_config`); raises when it never comes, so the
        caller's offset is not committed."""
        k = self.settings.kafka
        md = self.producer.send(topic, key=key, value=value, headers=headers).get(
            timeout=k.delivery_timeout_ms / 1000 + 5
        )
        if md.offset < 0:
            # An idempotent producer's retry answered DUPLICATE_SEQUENCE_NUMBER: the broker
            # says it already holds the batch. True on Kafka; not always on a broker whose
            # sequence state is not stored with the log (docs/events.md).
            log.warning("kafka_ack_as_duplicate", topic=topic, partition=md.partition, key=key)

    def _publish_embedded(self, event: TrackEmbeddedEvent) -> None:
        self._send(
            self.settings.kafka.topic_embedded,
            event.key.encode("utf-8"),
            event.to_bytes(),
            [("storycue.type", b"track.embedded")],
        )

    def _dead_letter(self, record: ConsumerRecord, code: str, reason: str) -> None:
        k = self.settings.kafka
        headers = [
            (DLQ_REASON, reason[:4000].encode("utf-8", "replace")),
            (DLQ_CODE, code.encode()),
            (DLQ_TOPIC, str(record.topic).encode()),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode()),
            (DLQ_GROUP, k.group_id.encode()),
            (DLQ_FAILED_AT, datetime.now(UTC).isoformat().encode()),
        ]
        headers += [(n, v) for n, v in (record.headers or []) if not n.startswith("storycue.dlq.")]
        try:
            try:
                self._send(k.topic_dead_letter, record.key, record.value, headers)
            except MessageSizeTooLargeError:
                # Too large to copy (the producer's or broker's limit): dead-letter it
                # without its value, else it would block its partition for ever.
                size = str(len(record.value or b"")).encode()
                self._send(
                    k.topic_dead_letter, record.key, None, [*headers, (DLQ_VALUE_DROPPED, size)]
                )
        except KafkaError as exc:
            # Not committing is the only safe answer: the message stays to be re-read.
            raise ConnectionError(f"dead-letter topic unavailable: {exc}") from exc
        self.stats.dead_lettered += 1
        count_kafka_message(k.topic_tracks, dead_letter_reason=code)
        log.warning(
            "event_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            code=code,
            reason=reason[:500],
        )

    def _commit(self, tp: TopicPartition, next_offset: int) -> None:
        """Commit ``next_offset``, retrying with backoff while the broker or the group's
        coordinator cannot be reached: a broker restart must not end the consumer (it did,
        when the restart fell between a message's writes and its commit). A commit the group
        refuses (a rebalance moved the partition) or one still failing when :meth:`stop` is
        asked is given up: the record is read again, and handling it again is idempotent."""
        q = self.settings.queue
        attempt = 0
        while True:
            try:
                self.consumer.commit({tp: OffsetAndMetadata(next_offset, "", -1)})
                return
            except KafkaError as exc:
                where = {"topic": tp.topic, "partition": tp.partition, "offset": next_offset}
                if not getattr(exc, "retriable", False) or self._stop.is_set():
                    log.warning("offset_commit_given_up", **where, error=str(exc))
                    return
                attempt += 1
                delay = min(q.task_retry_backoff_max_s, q.task_retry_backoff_s * 2**attempt)
                log.warning("offset_commit_retry", **where, attempt=attempt, error=str(exc))
                self._sleep(delay)

    def _report_lag(self, tp: TopicPartition) -> None:
        try:
            end = self.consumer.end_offsets([tp]).get(tp)
            pos = self.consumer.position(tp)
        except (KafkaError, AssertionError, ValueError):
            return
        if end is not None and pos is not None:
            set_kafka_lag(tp.topic, tp.partition, int(end) - int(pos))


def consumer_from_settings(settings: Settings | None = None, **kwargs: Any) -> IngestConsumer:
    """An :class:`IngestConsumer` on the configured Kafka and stores."""
    return IngestConsumer(settings, **kwargs)


def main() -> None:
    """Run one ingest-consumer process until SIGTERM/SIGINT (``python -m
    storycue.events.consumer``); every setting from the environment."""
    import signal

    from storycue.log import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    from storycue.metrics import start_metrics_server_if_enabled

    start_metrics_server_if_enabled(settings.metrics_port)  # probes and Prometheus scrape it
    consumer = IngestConsumer(settings)
    # The first track must not pay for loading the model and the backbone's kernel set-up.
    consumer.context.load_model().warm_up(text=False, audio=True)
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    signal.signal(signal.SIGINT, lambda *_: consumer.stop())
    try:
        consumer.run()
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
