"""The ingest consumer's offset commit when the broker is gone at that moment.

A fresh-clone CI run of test_kafka_broker_restarted_while_consuming lost its consumer: the
broker restart fell between a message's writes and its offset commit, the commit raised
``KafkaConnectionError`` and the process exited. Here the same moment is made
deterministic: a record in hand, the broker killed, the commit started, the broker back.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from faultsvc import PrivateTansu

from storycue.config import QueueSettings, Settings
from storycue.events.consumer import IngestConsumer
from storycue.events.kafka import ensure_topics, publish_track_events
from storycue.events.schemas import TrackEvent
from support.kafka import unique_kafka


@pytest.mark.timeout(300)
def test_commit_waits_for_a_restarted_broker(tmp_path: Path, private_tansu: PrivateTansu) -> None:
    settings = Settings(
        home=tmp_path / "home",
        kafka=unique_kafka(private_tansu.bootstrap_servers, group="commit"),
        queue=QueueSettings(task_retry_backoff_s=0.25, task_retry_backoff_max_s=1.0),
    )
    ensure_topics(settings, partitions=1)
    event = TrackEvent(
        type="track.removed", tenant="t", catalogue="c", track_key="k", uri="/gone.wav"
    )
    assert publish_track_events([event], settings) == 1
    consumer = IngestConsumer(settings)
    try:
        deadline = time.monotonic() + 120
        records = []
        while not records and time.monotonic() < deadline:
            for tp, batch in consumer.consumer.poll(timeout_ms=500).items():
                records = [(tp, r) for r in batch]
        assert records, "no record within 120 s"
        tp, record = records[0]

        private_tansu.stop(signal.SIGKILL)
        failures: list[BaseException] = []

        def commit() -> None:
            try:
                consumer._commit(tp, record.offset + 1)
            except BaseException as exc:  # what used to end the consumer process
                failures.append(exc)

        worker = threading.Thread(target=commit, daemon=True)
        worker.start()
        time.sleep(3.0)
        assert failures == []
        assert worker.is_alive(), "the commit returned while the broker was down"
        private_tansu.start()
        worker.join(120)
        assert not worker.is_alive(), "the commit did not finish after the broker came back"
        assert failures == []
        assert consumer.consumer.committed(tp) == record.offset + 1
    finally:
        consumer.close()
