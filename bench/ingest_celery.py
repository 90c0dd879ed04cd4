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
from typing import Any, cast

import torch

from _common import (
    DEFAULT_MAX_LOAD,
    REPO_ROOT,
    RESULTS_DIR,
    environment,
    loadavg,
    resolve_emotion_checkpoint,
    scratch_dir,
    stopwatch,
    wait_for_quiet,
    write_results,
)
from bulk import process_cpu_s, wait_job, wait_worker_ready
from ingest import log_mel_patches, pick_clips, run_bare
from storycue.audio.decode import load_audio
from storycue.config import IngestSourceSettings, QueueSettings, Settings
from storycue.log import configure_logging
from storycue.models.emotion import load_emotion_model
from storycue.models.musicnn import MusicnnBackbone

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
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=2, help="worker tasks at once (2)")
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--max-load", type=float, default=DEFAULT_MAX_LOAD)
    ap.add_argument("--max-wait", type=float, default=180.0)
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args()
    configure_logging(args.log_level)
    base = Settings()
    if base.data_dir is None or not (base.data_dir / "4q").is_dir():
        raise SystemExit("needs the 4Q clips: set STORYCUE_DATA_DIR (default ../shared/data)")
    folder = (base.data_dir / "4q").resolve()
    clips = pick_clips(folder, args.clips)
    load = wait_for_quiet(args.max_load, args.max_wait)

    from storycue.jobs.params import IngestParams
    from storycue.jobs.runtime import close_runtimes, get_runtime
    from storycue.runtime.dispatcher import CeleryDispatcher
    from storycue.storage.factory import close_vector_stores

    with scratch_dir() as tmp:
        checkpoint, model_record = resolve_emotion_checkpoint(None, Path(tmp))
        home = Path(tmp) / "home"
        settings = Settings(
            home=home,
            emotion_model=checkpoint,
            sources=IngestSourceSettings(allowed_roots=[folder]),
            queue=QueueSettings(execution="celery", broker_url=args.broker_url),
        )
        # (b) the bare backbone on precomputed mel patches, in this process, first.
        model = load_emotion_model(checkpoint, device="cpu")
        backbone = cast(MusicnnBackbone, model.audio_backbone())
        decoded = [load_audio(c, settings=settings) for c in clips]
        audio_s = float(sum(a.duration_s for a in decoded))
        patches = [log_mel_patches(backbone, a.waveform) for a in decoded]
        run_bare(patches[:1], backbone, settings.batch.audio_patches, None)  # warm-up
        bare = run_bare(patches, backbone, settings.batch.audio_patches, None)
        print(f"bare backbone: {bare.wall_s:.2f} s for {len(clips)} clips", file=sys.stderr)
        del model, backbone

        rt = get_runtime(settings)
        rt.tenancy.create_catalogue(TENANT, CATALOGUE)
        cat = rt.tenancy.catalogue(TENANT, CATALOGUE)
        for c in clips:
            rt.tenancy.register_source(TENANT, cat.id, str(c))
        # Register the model (and create its collection) before the worker opens the
        # embedded store: an Edge folder is locked by the process that opened it, so this
        # process must not touch it afterwards (submit_ingest would, to register).
        active = rt.load_model()
        record = rt.register(active)
        close_runtimes()  # the worker process must own the embedded vector store
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
            rt = get_runtime(settings)
            cpu0 = process_cpu_s(worker.pid)
            with stopwatch() as t_job:
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
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
            close_runtimes()
            close_vector_stores()
        tail = log_path.read_text(errors="replace")[-1500:]

    job_s = t_job[0].wall_s
    worker_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    n = len(clips)
    results: dict[str, Any] = {
        "benchmark": NAME,
        "environment": environment("cpu"),
        "load": {**load, "load_after": loadavg()},
        "config": {
            "clips": n,
            "audio_s": round(audio_s, 1),
            "concurrency": args.concurrency,
            "broker": args.broker_url,
            "audio_patches": settings.batch.audio_patches,
            "job_chunk_size": settings.queue.job_chunk_size,
        },
        "model": model_record,
        "job": {
            "wall_s": round(job_s, 3),
            "clips_per_s": n / job_s,
            "real_time_factor": audio_s / job_s,
            "worker_cpu_s": None if worker_cpu is None else round(worker_cpu, 2),
            "worker_cpu_util": None if worker_cpu is None else round(worker_cpu / job_s, 2),
        },
        "bare_backbone": {
            "wall_s": round(bare.wall_s, 3),
            "clips_per_s": n / bare.wall_s,
            "cpu_util": round(bare.cpu_util, 2),
        },
        "ratio": round(bare.wall_s / job_s, 4),
        "target_ratio": TARGET_RATIO,
        "worker_log_tail": tail,
    }
    path = write_results(NAME, results, Path(args.results_dir) if args.results_dir else RESULTS_DIR)
    print(
        f"job: {n / job_s:.2f} clips/s ({audio_s / job_s:.1f}x real time), worker "
        f"{results['job']['worker_cpu_util']} cores; bare backbone {n / bare.wall_s:.2f} "
        f"clips/s; ratio {results['ratio']:.3f} (target >= {TARGET_RATIO})"
    )
    print(f"wrote {path}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
