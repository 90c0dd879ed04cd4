"""Acknowledged records survive a broker kill: storycue's producer against the persistent
Tansu broker, SIGKILLed and restarted while records are being sent one at a time (the
ingest consumer's pattern: send, wait for the acknowledgement, then commit).

This is the reproduction behind the lost ``track.embedded`` of
``test_kafka_broker_restarted_while_consuming``. With the idempotent producer, Tansu 0.6's
S3 engine loses acknowledged records: it stores the producer's sequence (``meta.json``)
apart from the batch (``records/<offset>.batch``) and the partition's ``watermark.json``;
killed in between, the restarted broker finds the sequence already advanced and answers
the client's retry of that batch ``DUPLICATE_SEQUENCE_NUMBER``, which kafka-python takes
as success (offset -1), as the protocol means it, so the record is acknowledged but absent.
Measured here: 3 and 2 of 300 records lost over 6 kills (two runs), 2 of 300 over 4 kills,
1 of 150 over 4 kills; each acknowledged at offset -1, with ``meta.json`` one sequence
ahead of the partition's high watermark. Without idempotence
nothing acknowledged was lost (300 of 300, 6 kills); a retry may store a record twice,
which readers of ``track.embedded`` de-duplicate (docs/events.md).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path

import pytest
from faultsvc import PrivateTansu
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from storycue.config import KafkaSettings, Settings
from storycue.events.kafka import client_config, make_producer, producer_config


def test_producer_config_is_durable_ordered_and_idempotent_by_default() -> None:
    cfg = producer_config(KafkaSettings())
    assert cfg["acks"] == "all"
    assert cfg["enable_idempotence"] is True
    assert cfg["max_in_flight_requests_per_connection"] == 1
    assert "retries" not in cfg  # the client's default: until delivery_timeout_ms
    off = producer_config(KafkaSettings(idempotence=False))
    assert off["enable_idempotence"] is False and "retries" not in off
    assert off["acks"] == "all" and off["max_in_flight_requests_per_connection"] == 1


@pytest.mark.timeout(300)
def test_acknowledged_records_survive_broker_kills(tmp_path: Path) -> None:
    tansu = PrivateTansu(tmp_path / "tansu")
    try:
        kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers, idempotence=False)
        settings = Settings(home=tmp_path / "home", kafka=kafka)
        topic = f"acks-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(**client_config(kafka))
        try:
            admin.create_topics([NewTopic(topic, 2, 1)])
        finally:
            admin.close()

        rng = random.Random(20261202)
        kills = 4
        done = threading.Event()

        def killer() -> None:
            for _ in range(kills):
                time.sleep(rng.uniform(0.4, 1.5))
                tansu.stop()
                time.sleep(rng.uniform(0.3, 2.0))
                tansu.start()
            done.set()

        producer = make_producer(settings)
        acked: dict[str, int] = {}
        failed_sends = 0
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            i = 0
            # Keep sending until every kill happened and at least 120 records are acked.
            while i < 120 or not done.is_set():
                key = f"k{i:05d}"
                try:
                    md = producer.send(topic, key=key.encode(), value=key.encode()).get(60)
                except KafkaError:
                    failed_sends += 1  # not acknowledged: sent again, like the consumer
                    time.sleep(0.2)
                    continue
                acked[key] = md.partition
                i += 1
        finally:
            thread.join(60)
            producer.close()

        consumer = KafkaConsumer(
            topic, auto_offset_reset="earliest", enable_auto_commit=False, **client_config(kafka)
        )
        seen: list[str] = []
        deadline = time.monotonic() + 30
        try:
            while len(set(seen)) < len(acked) and time.monotonic() < deadline:
                for records in consumer.poll(500).values():
                    seen.extend(r.key.decode() for r in records)
        finally:
            consumer.close()
        missing = sorted(set(acked) - set(seen))
        assert missing == [], (
            f"{len(missing)} of {len(acked)} acknowledged records are not in the log after "
            f"{kills} broker kills: {missing[:10]} (partitions "
            f"{[acked[k] for k in missing[:10]]}); {failed_sends} sends failed and were retried"
        )
    finally:
        tansu.close()
