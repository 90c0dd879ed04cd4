"""Audio ingest through the Celery audio worker, beside the bare musicnn forward.

(a) An ingest job of ``--clips`` real 4Q clips, as ``POST /v1/catalogues/{c}/ingest`` runs
    it when deployed: the clips are registered as tracks of a catalogue (local paths under
    an allowed root), ``submit_ingest`` creates the job and the Celery dispatcher sends its
    chunks through Redis to an audio worker process started by this script
    (``python -m storycue.runtime.worker audio``), which fetches, decodes, resamples,
    computes the mel patches, runs the backbone (through its micro-batcher) and the head,
    and stores vectors and rows. Timed from submission until the job has succeeded; the
    worker's CPU seconds over the same span are reported too.
(b) The bare ``MusicnnBackbone.forward_patches`` on the same clips' mel patches (computed
    beforehand), in batches of ``batch.audio_patches``, in this process.

The ratio (a)/(b) of clips per second is the share of the backbone's speed the deployed
ingest path keeps (target 0.8). Writes ``bench/results/ingest-celery.json``.

    python bench/ingest_celery.py [--clips 24] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import _harness as harness
from _report import ingest_path_rows
from bulk import process_cpu_s, wait_job, wait_worker_ready
from ingest import DistributedIngest, bare_backbone_run, fourq_clips
from storycue.config import IngestSourceSettings, QueueSettings, Settings
from storycue.log import configure_logging

NAME = "ingest-celery"
TARGET_RATIO = 0.8
TENANT = "default"
CATALOGUE = "bench-ingest"


def start_audio_worker(
    env: dict[str, str], concurrency: int, log_path: Path
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "storycue.runtime.worker", "audio",
             "--concurrency", str(concurrency)],
            cwd=harness.REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=2, help="worker tasks at once (2)")
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--timeout", type=float, default=1800.0)
    harness.add_run_arguments(ap)
    args = ap.parse_args()
    configure_logging(args.log_level)
    folder, clips = fourq_clips(Settings(), args.clips)
    load = harness.wait_for_quiet(args.max_load, args.max_wait)

    from storycue.context import close_contexts, get_context
    from storycue.jobs.params import IngestParams
    from storycue.runtime.dispatcher import CeleryDispatcher
    from storycue.storage.factory import close_vector_stores

    with harness.scratch_dir() as tmp:
        checkpoint, model_record = harness.resolve_emotion_checkpoint(None, Path(tmp))
        home = Path(tmp) / "home"
        settings = Settings(
            home=home,
            emotion_model=checkpoint,
            sources=IngestSourceSettings(allowed_roots=[folder]),
            queue=QueueSettings(execution="celery", broker_url=args.broker_url),
        )
        audio_s, bare = bare_backbone_run(checkpoint, clips, settings)
        bench = DistributedIngest(
            NAME, args, load, model_record, len(clips), audio_s, bare,
            settings.batch.audio_patches, "job", "worker_cpu", "worker_log_tail",
        )  # fmt: skip

        rt = get_context(settings)
        rt.tenancy.create_catalogue(TENANT, CATALOGUE)
        cat = rt.tenancy.catalogue(TENANT, CATALOGUE)
        for c in clips:
            rt.tenancy.register_source(TENANT, cat.id, str(c))
        # Register the model (and create its collection) before the worker opens the
        # embedded store: an Edge folder is locked by the process that opened it, so this
        # process must not touch it afterwards (submit_ingest would, to register).
        active = rt.load_model()
        record = rt.register(active)
        close_contexts()  # the worker process must own the embedded vector store
        close_vector_stores()
        env = {
            **os.environ,
            "STORYCUE_HOME": str(home),
            "STORYCUE_EMOTION_MODEL": checkpoint,
            "STORYCUE_QUEUE__EXECUTION": "celery",
            "STORYCUE_QUEUE__BROKER_URL": args.broker_url,
            "STORYCUE_SOURCES__ALLOWED_ROOTS": f'["{folder}"]',
            "STORYCUE_LOG_LEVEL": args.log_level,
            "OMP_NUM_THREADS": str(torch.get_num_threads()),
        }
        dispatcher = CeleryDispatcher(settings)
        dispatcher.app.control.purge()
        log_path = Path(tmp) / "worker.log"
        worker = start_audio_worker(env, args.concurrency, log_path)
        try:
            wait_worker_ready(dispatcher.app, worker, 180.0)
            rt = get_context(settings)
            cpu0 = process_cpu_s(worker.pid)
            with harness.stopwatch() as t_job:
                # submit_ingest's job, without its register step (see above).
                job = rt.jobs.create(
                    TENANT,
                    "ingest",
                    IngestParams(catalogue=CATALOGUE).model_dump(mode="json"),
                    items=[
                        (str(src.id), src.uri)
                        for src in rt.tenancy.sources_to_ingest(TENANT, cat.id, record.id)
                    ],
                    catalogue_id=cat.id,
                    model=active.identity,
                )
                dispatcher.dispatch(job)
                final = wait_job(rt, job.id, args.timeout)
            cpu1 = process_cpu_s(worker.pid)
            if final.state != "succeeded":
                raise SystemExit(f"the ingest job ended {final.state}: {final}")
            stored = rt.tenancy.count_tracks(TENANT, cat.id)
            if stored != len(clips):
                raise SystemExit(f"the job stored {stored} of {len(clips)} tracks")
        finally:
            harness.stop_process(worker)
            close_contexts()
            close_vector_stores()
        tail = log_path.read_text(errors="replace")[-1500:]

    return bench.write(
        {
            "concurrency": args.concurrency,
            "broker": args.broker_url,
            "job_chunk_size": settings.queue.job_chunk_size,
        },
        t_job[0].wall_s,
        harness.cpu_delta(cpu0, cpu1),
        tail,
    )


def summary_section(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    return [
        "## Ingest through Celery: an ingest job to the audio worker vs bare backbone forward",
        "",
        f"{cfg['clips']} real 4Q clips ({cfg['audio_s']:,.1f} s of audio) through "
        f"`{cfg['broker']}` to one audio worker (concurrency {cfg['concurrency']}, "
        f"{cfg['audio_patches']} patches per batch).",
        "",
        *ingest_path_rows(r, r["job"], "ingest job through the Celery audio worker", "worker"),
    ]


if __name__ == "__main__":
    main()
