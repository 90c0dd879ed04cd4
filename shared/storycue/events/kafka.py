"""Kafka plumbing shared by the producer helper and the ingest consumer (kafka-python)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from storycue.config import KafkaSettings, Settings, get_settings
from storycue.errors import ConfigurationError
from storycue.events.schemas import TrackEvent
from storycue.log import get_logger

log = get_logger(__name__)


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options every kafka-python client of storycue gets."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()],
        "security_protocol": kafka.security_protocol,
    }
    if not cfg["bootstrap_servers"]:
        raise ConfigurationError("STORYCUE_KAFKA__BOOTSTRAP_SERVERS is empty")
    if kafka.sasl_mechanism:
        cfg["sasl_mechanism"] = kafka.sasl_mechanism
        cfg["sasl_plain_username"] = kafka.sasl_username
        cfg["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    return cfg


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Options of every storycue producer: durable (``acks=all``: every in-sync replica
    has the record before the send succeeds), ordered (one request in flight per broker, so
    a retry never overtakes the next record of a key) and, with ``kafka.idempotence``,
    de-duplicated (the broker drops a retried batch it already holds). Retries run until
    ``kafka.delivery_timeout_ms``; a send that still fails raises to the caller, which then
    does not commit the offset it was answering."""
    cfg: dict[str, Any] = client_config(kafka) | {
        "acks": "all",
        "enable_idempotence": kafka.idempotence,
        "max_in_flight_requests_per_connection": 1,
        "delivery_timeout_ms": kafka.delivery_timeout_ms,
        "linger_ms": 5,
    }
    # ``retries`` stays the client's default (unbounded), so the delivery timeout bounds them.
    return cfg


def make_producer(settings: Settings | None = None, **overrides: Any) -> KafkaProducer:
    """A producer configured by :func:`producer_config` (``overrides`` win)."""
    s = settings or get_settings()
    return KafkaProducer(**(producer_config(s.kafka) | overrides))


def ensure_topics(
    settings: Settings | None = None,
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    topics: Iterable[str] | None = None,
) -> list[str]:
    """Create the event topics that do not exist yet; returns the ones created.

    For development and tests: production topics are created by the platform's tooling
    (with their replication factor and retention); this never changes an existing topic.
    """
    s = settings or get_settings()
    wanted = list(
        topics or (s.kafka.topic_tracks, s.kafka.topic_embedded, s.kafka.topic_dead_letter)
    )
    admin = KafkaAdminClient(**client_config(s.kafka))
    created: list[str] = []
    try:
        existing = set(admin.list_topics())
        for name in wanted:
            if name in existing:
                continue
            try:
                admin.create_topics([NewTopic(name, partitions, replication_factor)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    if created:
        log.info("kafka_topics_created", topics=created, partitions=partitions)
    return created


def publish_track_events(
    events: Iterable[TrackEvent],
    settings: Settings | None = None,
    *,
    producer: KafkaProducer | None = None,
    timeout_s: float | None = None,
) -> int:
    """Publish track events to ``Settings.kafka.topic_tracks`` keyed by track; waits for
    every acknowledgement (by default as long as the producer may retry) and returns how
    many were sent. The helper platform teams (and the tests) use; any Kafka client that
    writes the same JSON and key works as well."""
    s = settings or get_settings()
    own = producer is None
    prod = producer or make_producer(s)
    wait_s = timeout_s if timeout_s is not None else s.kafka.delivery_timeout_ms / 1000 + 5
    try:
        futures = [
            prod.send(
                s.kafka.topic_tracks,
                key=ev.key.encode("utf-8"),
                value=ev.to_bytes(),
                headers=[
                    ("storycue.type", ev.type.encode()),
                    ("storycue.schema_version", str(ev.schema_version).encode()),
                ],
            )
            for ev in events
        ]
        for f in futures:
            f.get(timeout=wait_s)
    except KafkaError as exc:
        raise ConfigurationError(f"publishing to Kafka failed: {exc}") from exc
    finally:
        if own:
            prod.close()
    return len(futures)
