"""Audio ingest through the Kafka ingest consumer, beside the bare musicnn forward.

(a) ``--clips`` real 4Q clips announced as ``track.added`` events on the tracks topic of a
    Kafka-compatible broker (Tansu, in memory, started by this script) and ingested by one
    consumer process started by this script (``python -m storycue.events.consumer``, as
    the ``ingest-consumer`` service runs it): per event it registers the track, fetches,
    decodes, resamples, computes the mel patches, runs the backbone and the head, stores
    vectors and rows, publishes ``track.embedded`` (waiting for the broker's
    acknowledgement) and commits the offset. Timed from the first event sent until the
    last ``track.embedded`` is read back; the consumer's CPU seconds over the same span
    are reported too. The consumer is started, warmed and has joined its group (its
    ``partitions_assigned`` log line) before the events are sent: start-up is reported
    apart (``consumer.startup``), as a deployed consumer pays it once, not per track.
(b) The bare ``MusicnnBackbone.forward_patches`` on the same clips' mel patches (computed
    beforehand), in batches of ``batch.audio_patches``, in this process.

The ratio (a)/(b) of clips per second is the share of the backbone's speed the event path
keeps (target 0.8). Writes ``bench/results/ingest-kafka.json``.

    python bench/ingest_kafka.py [--clips 48]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import torch

import _harness as harness
from _report import ingest_path_rows
from bulk import process_cpu_s, start_py_spy
from ingest import DistributedIngest, bare_backbone_run, fourq_clips
from storycue.config import IngestSourceSettings, KafkaSettings, Settings
from storycue.log import configure_logging

NAME = "ingest-kafka"
TARGET_RATIO = 0.8
TENANT = "default"
CATALOGUE = "bench-ingest"


def start_consumer(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "storycue.events.consumer"],
            cwd=harness.REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_consumer_ready(
    proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> dict[str, float]:
    """Until the consumer has warmed its model and joined its group (its
    ``partitions_assigned`` log line); seconds from now to each."""
    started = time.monotonic()
    seen: dict[str, float] = {}
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise SystemExit(f"the consumer exited with status {proc.returncode}:\n{tail}")
        text = log_path.read_text(errors="replace")
        for key, line in (("warm_s", "model_warm"), ("assigned_s", "partitions_assigned")):
            if key not in seen and line in text:
                seen[key] = round(time.monotonic() - started, 2)
        if len(seen) == 2:
            return seen
        time.sleep(0.2)
    raise SystemExit(f"the consumer was not warm and assigned partitions in {timeout_s} s")


def read_embedded(settings: Settings, expect: int, timeout_s: float) -> list[Any]:
    """``track.embedded`` events read back from the embedded topic, until ``expect``."""
    from kafka import KafkaConsumer

    from storycue.events.kafka import client_config
    from storycue.events.schemas import TrackEmbeddedEvent

    k = settings.kafka
    consumer = KafkaConsumer(
        k.topic_embedded,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=500,
        **client_config(k),
    )
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expect and time.monotonic() < deadline:
            for msg in consumer:
                ev = TrackEmbeddedEvent.model_validate_json(msg.value)
                seen[ev.uri] = ev
                if len(seen) >= expect:
                    break
    finally:
        consumer.close()
    if len(seen) < expect:
        raise SystemExit(f"only {len(seen)} of {expect} tracks were embedded in {timeout_s} s")
    return list(seen.values())


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--timeout", type=float, default=1800.0)
    harness.add_run_arguments(ap)
    ap.add_argument(
        "--profile",
        action="store_true",
        help="sample the consumer with py-spy while it ingests "
        "(<results-dir>/ingest-kafka-profile.txt, collapsed stacks)",
    )
    args = ap.parse_args()
    configure_logging(args.log_level)
    folder, clips = fourq_clips(Settings(), args.clips)
    load = harness.wait_for_quiet(args.max_load, args.max_wait)

    sys.path.insert(0, str(harness.REPO_ROOT / "tests"))  # the tests' throw-away broker
    from storycue.events.kafka import ensure_topics, publish_track_events
    from storycue.events.schemas import TrackEvent
    from support.tansu import TansuBroker

    with harness.scratch_dir() as tmp, TansuBroker() as broker:
        checkpoint, model_record = harness.resolve_emotion_checkpoint(None, Path(tmp))
        home = Path(tmp) / "home"
        tag = uuid.uuid4().hex[:8]
        kafka = KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            topic_tracks=f"tracks-{tag}",
            topic_embedded=f"embedded-{tag}",
            topic_dead_letter=f"dlq-{tag}",
            group_id=f"ingest-{tag}",
        )
        settings = Settings(
            home=home,
            emotion_model=checkpoint,
            sources=IngestSourceSettings(allowed_roots=[folder]),
            kafka=kafka,
        )
        audio_s, bare = bare_backbone_run(checkpoint, clips, settings)
        bench = DistributedIngest(
            NAME, args, load, model_record, len(clips), audio_s, bare,
            settings.batch.audio_patches, "consumer", "cpu", "consumer_log_tail",
        )  # fmt: skip

        ensure_topics(settings)
        env = {
            **os.environ,
            "STORYCUE_HOME": str(home),
            "STORYCUE_EMOTION_MODEL": checkpoint,
            "STORYCUE_SOURCES__ALLOWED_ROOTS": f'["{folder}"]',
            "STORYCUE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "STORYCUE_KAFKA__TOPIC_TRACKS": kafka.topic_tracks,
            "STORYCUE_KAFKA__TOPIC_EMBEDDED": kafka.topic_embedded,
            "STORYCUE_KAFKA__TOPIC_DEAD_LETTER": kafka.topic_dead_letter,
            "STORYCUE_KAFKA__GROUP_ID": kafka.group_id,
            "STORYCUE_LOG_LEVEL": "INFO",
            "OMP_NUM_THREADS": str(torch.get_num_threads()),
        }
        log_path = Path(tmp) / "consumer.log"
        consumer = start_consumer(env, log_path)
        try:
            startup = wait_consumer_ready(consumer, log_path, 180.0)
            events = [
                TrackEvent(
                    type="track.added",
                    tenant=TENANT,
                    catalogue=CATALOGUE,
                    track_key=c.stem,
                    uri=str(c),
                )
                for c in clips
            ]
            spy = (
                start_py_spy(consumer.pid, harness.results_dir(args), "ingest-kafka-profile.txt")
                if args.profile
                else None
            )
            cpu0 = process_cpu_s(consumer.pid)
            with harness.stopwatch() as t_job:
                publish_track_events(events, settings)
                embedded = read_embedded(settings, len(clips), args.timeout)
            cpu1 = process_cpu_s(consumer.pid)
            if spy is not None:
                spy.terminate()
                spy.wait(timeout=30)
            created = sum(1 for e in embedded if e.created)
            if created != len(clips):
                raise SystemExit(f"{created} of {len(clips)} tracks were newly embedded")
        finally:
            harness.stop_process(consumer)
        tail = log_path.read_text(errors="replace")[-1500:]

    return bench.write(
        {
            "broker": "tansu (memory storage)",
            "max_poll_records": settings.kafka.max_poll_records,
            "profiled": bool(args.profile),
        },
        t_job[0].wall_s,
        harness.cpu_delta(cpu0, cpu1),
        tail,
        run_extra={"startup": startup},
    )


def summary_section(r: dict[str, Any]) -> list[str]:
    cfg, run = r["config"], r["consumer"]
    return [
        "## Ingest through Kafka: track events to the ingest consumer vs bare backbone forward",
        "",
        f"{cfg['clips']} real 4Q clips ({cfg['audio_s']:,.1f} s of audio) announced as "
        f"`track.added` events on {cfg['broker']} to one ingest-consumer process "
        f"({cfg['audio_patches']} patches per batch), timed until the last `track.embedded` "
        "is read back. The consumer was warm and had joined its group before the first event"
        + (
            f" (start-up, paid once: warm {run['startup']['warm_s']} s, partitions assigned "
            f"{run['startup']['assigned_s']} s after start)."
            if run.get("startup")
            else "."
        ),
        "",
        *ingest_path_rows(r, run, "events through the ingest consumer", "consumer"),
    ]


if __name__ == "__main__":
    main()
