"""Bulk matching: stories per second of a match job end to end beside the bare text encoder.

(a) A bulk match job of ``--stories`` stories (default 10,000) through the jobs layer, as
    ``POST /v1/jobs`` runs it: ``storycue.jobs.submit.submit_match`` stores the job and its
    stories, the dispatcher cuts it into chunks of ``queue.job_chunk_size`` stories, and
    each chunk segments its stories, embeds the segments (text encoder + head, in batches),
    searches the catalogue for every segment and records one cue sheet per story. Timed
    from submission until the job has succeeded. ``--execution inprocess`` (default) runs
    the chunks in the in-process dispatcher's threads (the embedded mode);
    ``--execution celery`` sends them through the Redis broker to a text worker process
    started by this script (``python -m storycue.runtime.worker text``), as deployed.
(b) The bare text encoder forward on the same stories' segments, segmented and tokenised
    beforehand: (b1) all segments sorted by length and cut into batches (the least padding
    possible, the floor), (b2) in the very batches the job builds (per chunk, all its
    stories' segments sorted by length inside the chunk).

The ratios (a)/(b1) and (a)/(b2) of stories per second are the share of the encoder's
speed the bulk path keeps; (a)/(b1) is the headline. The catalogue searched holds
``--tracks`` synthetic vectors of the model's dimension, inserted directly through the
vector store.

Run from the repository root: ``python bench/bulk.py`` (``--help``); ``--quick`` for a
smoke run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from _harness import (
    REPO_ROOT,
    add_run_arguments,
    resolve_emotion_checkpoint,
    results_dir,
    run_record,
    scratch_dir,
    stop_process,
    stopwatch,
    wait_for_quiet,
    write_results,
)
from _report import fmt, footer, quick_note, verdict
from search import payloads, synthetic_vectors
from storycue.config import QueueSettings, Settings
from storycue.data.isear import load_isear
from storycue.errors import DatasetNotFoundError
from storycue.log import configure_logging
from storycue.models.text import TextEncoder
from storycue.storage.vectors import VectorPoint, point_id_for
from text import pretokenise, pretokenise_calls, run_bare, synthetic_texts

NAME = "bulk"
TARGET_RATIO = 0.8
TENANT = "default"
CATALOGUE = "bench"


def stories_for(settings: Settings, n: int, *, quick: bool) -> tuple[list[str], str]:
    """``n`` stories: ISEAR test texts (cycled), or generated sentences when ISEAR is absent
    in a quick run."""
    try:
        texts = [r.text for r in load_isear("test", settings=settings)]
        source = "isear-test (cycled)"
    except DatasetNotFoundError:
        if not quick:
            raise
        texts, source = synthetic_texts(max(n, 64)), "synthetic"
    return [texts[i % len(texts)] for i in range(n)], source


def seed_catalogue(rt: Any, model: Any, tracks: int, seed: int) -> None:
    cat, _ = rt.tenancy.create_catalogue(TENANT, CATALOGUE)
    rt.register(model)
    vectors = synthetic_vectors(tracks, model.identity.dim, model.distance, seed)
    meta = payloads(tracks, [cat.id], seed)
    for start in range(0, tracks, 4096):
        end = min(tracks, start + 4096)
        rt.vectors.upsert(
            model.identity,
            [
                VectorPoint(id=point_id_for(i + 1), vector=vectors[i], payload=meta[i])
                for i in range(start, end)
            ],
        )
    if hasattr(rt.vectors, "optimize"):
        rt.vectors.optimize(model.identity)


def job_batching(encoder: Any, stories: list[str], settings: Settings) -> Any:
    """The encoder batches the job builds: chunks of ``queue.job_chunk_size`` stories, each
    chunk's segments in one ``embed_text`` call (sorted by length and cut into
    ``batch_size`` batches inside that call)."""
    from storycue.pipeline.segment import segment_story

    chunk = group = settings.queue.job_chunk_size
    calls: list[list[str]] = []
    for c in range(0, len(stories), chunk):
        part = stories[c : c + chunk]
        for g in range(0, len(part), group):
            calls.append(
                [
                    s.text
                    for story in part[g : g + group]
                    for s in segment_story(story, encoder.count_tokens, encoder.max_tokens)
                ]
            )
    return pretokenise_calls(encoder, calls)


def wait_job(rt: Any, job_id: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        job = rt.jobs.require(TENANT, job_id)
        if job.state in ("succeeded", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} still {job.state} after {timeout_s:.0f} s")
        time.sleep(0.05)


def start_worker(env: dict[str, str], concurrency: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "storycue.runtime.worker",
                "text",
                "--concurrency",
                str(concurrency),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``), or ``None``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_py_spy(
    pid: int, results_dir: Path, stem: str | None = None, *, gil: bool = False
) -> subprocess.Popen[bytes]:
    """Sample a worker process with py-spy (all threads, 100 Hz, waiting ones included; with
    ``gil``, only the thread holding the GIL) while the job runs; collapsed stacks
    (flame-graph input) go to ``<results_dir>/<stem>[-gil]-profile.txt`` (default stem
    ``bulk-celery``, the run's ``--name`` when given)."""
    name = f"{stem or 'bulk-celery'}-{'gil-' if gil else ''}profile.txt"
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.is_file():
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / name
    return subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
         "--output", str(out), "--threads", "--nonblocking",
         *(["--gil"] if gil else ["--idle"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_worker_ready(app: Any, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the text worker exited with {proc.returncode} (see its log)")
        try:
            if app.control.ping(timeout=1.0):
                return
        except Exception:  # broker still connecting
            time.sleep(0.5)
    raise SystemExit("the text worker did not answer a ping in time")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stories", type=int, default=10_000, help="stories in the job (10000)")
    p.add_argument("--tracks", type=int, default=10_000, help="tracks in the catalogue (10000)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--execution", choices=["inprocess", "celery"], default="inprocess")
    p.add_argument(
        "--broker-url",
        default="redis://127.0.0.1:6379/13",
        help="Celery broker for --execution celery (a Redis database of its own: 13)",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="metadata and job database (an empty PostgreSQL database, e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/bench_bulk); default: SQLite in the "
        "scratch home",
    )
    p.add_argument("--concurrency", type=int, default=2, help="worker tasks at once (2)")
    p.add_argument(
        "--worker-streams",
        type=int,
        default=1,
        help="celery: text forward passes the worker runs at once (batch.text_streams), "
        "each on this process's torch threads / streams (1)",
    )
    p.add_argument(
        "--chunk-size", type=int, default=None, help="stories per task (queue.job_chunk_size)"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="celery: sample the worker with py-spy while the job runs "
        "(<results-dir>/bulk-celery-profile.txt, collapsed stacks)",
    )
    p.add_argument(
        "--profile-gil",
        action="store_true",
        help="like --profile, sampling only the thread that holds the GIL "
        "(bulk-celery-gil-profile.txt): what serialises the worker's Python",
    )
    p.add_argument("--backend", choices=["torch", "onnx"], default=None, help="text runtime")
    p.add_argument("--model", default=None, help="emotion model (default: shipped va-regression)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--timeout", type=float, default=3600.0, help="longest wait for the job, s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--name",
        default=None,
        help="results file name (bulk, or bulk-celery with --execution celery); variants "
        "named bulk-* get their own section of SUMMARY.md",
    )
    add_run_arguments(p, quick="smoke run: 40 stories, 500 tracks")
    args = p.parse_args(argv)
    if args.quick:
        args.stories, args.tracks, args.max_wait = min(args.stories, 40), 500, 0.0
    if args.stories < 1 or args.tracks < 1:
        raise SystemExit("--stories and --tracks must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    configure_logging(args.log_level)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.backend:
        # The text encoder reads its runtime from the process-wide settings, not from the
        # Settings this script builds: set it there too, or the bare forward and the
        # in-process job would run on PyTorch while the worker runs --backend.
        os.environ["STORYCUE_TEXT_BACKEND"] = args.backend
        from storycue.config import get_settings

        get_settings.cache_clear()
    base = Settings()
    stories, source = stories_for(base, args.stories, quick=args.quick)
    load = wait_for_quiet(args.max_load, args.max_wait)
    from storycue.context import close_contexts, get_context
    from storycue.jobs.dispatch import InProcessDispatcher
    from storycue.jobs.params import MatchParams
    from storycue.jobs.submit import submit_match
    from storycue.pipeline.segment import segment_story
    from storycue.storage.factory import close_vector_stores, resolve_vector_backend

    with scratch_dir() as tmp:
        checkpoint, model_record = resolve_emotion_checkpoint(args.model, Path(tmp))
        env_over = {
            "STORYCUE_HOME": str(Path(tmp) / "home"),
            "STORYCUE_EMOTION_MODEL": checkpoint,
            "STORYCUE_QUEUE__EXECUTION": args.execution,
            "STORYCUE_QUEUE__BROKER_URL": args.broker_url,
            "STORYCUE_LOG_LEVEL": args.log_level,
        }
        if args.database_url:
            env_over["STORYCUE_DATABASE_URL"] = args.database_url
        if args.chunk_size:
            # The worker matches a task's stories in groups of its own job_chunk_size: without
            # this it would cut every chunk back into groups of the default size.
            env_over["STORYCUE_QUEUE__JOB_CHUNK_SIZE"] = str(args.chunk_size)
        settings = Settings(
            home=Path(env_over["STORYCUE_HOME"]),
            database_url=args.database_url,
            emotion_model=checkpoint,
            text_backend=base.text_backend,  # --backend is in the environment (above)
            queue=QueueSettings(
                execution=args.execution,
                broker_url=args.broker_url,
                job_chunk_size=args.chunk_size or QueueSettings().job_chunk_size,
            ),
        )
        rt = get_context(settings)
        model = rt.load_model()
        with stopwatch() as t_load:
            encoder = model.text_encoder
            # the bench measures the bare encoder: the model's own, before any batcher
            assert isinstance(encoder, TextEncoder), type(encoder)
            encoder.model()
        if args.backend and encoder.backend != args.backend:
            raise SystemExit(
                f"the bare encoder runs {encoder.backend}, not --backend {args.backend}"
            )
        seed_catalogue(rt, model, args.tracks, args.seed)

        # (b) first: segments and batches, then the bare forward (one run, warmed up).
        segments = [
            s.text
            for story in stories
            for s in segment_story(story, encoder.count_tokens, encoder.max_tokens)
        ]
        batches = pretokenise(encoder, segments)
        job_batches = job_batching(encoder, stories, settings)
        run_bare(encoder, type(batches)(batches.encodings[:1], 0, 0), None)
        bare = run_bare(encoder, batches, None)
        bare_job = run_bare(encoder, job_batches, None)
        print(
            f"bare encoder: {bare.wall_s:.2f} s for {len(segments)} segments sorted globally, "
            f"{bare_job.wall_s:.2f} s in the job's batches",
            file=sys.stderr,
        )

        worker: subprocess.Popen[bytes] | None = None
        worker_cpu_s: float | None = None
        spy: subprocess.Popen[bytes] | None = None
        worker_log = Path(tmp) / "worker.log"
        try:
            if args.execution == "celery":
                from storycue.runtime.dispatcher import CeleryDispatcher

                close_contexts()  # the worker process must own the embedded vector store
                close_vector_stores()
                threads = max(1, torch.get_num_threads() // args.worker_streams)
                env = {
                    **os.environ,
                    **env_over,
                    "OMP_NUM_THREADS": str(threads),
                    "STORYCUE_BATCH__TEXT_STREAMS": str(args.worker_streams),
                }
                dispatcher: Any = CeleryDispatcher(settings)
                dispatcher.app.control.purge()
                worker = start_worker(env, args.concurrency, worker_log)
                wait_worker_ready(dispatcher.app, worker, 180.0)
                rt = get_context(settings)
                if args.profile or args.profile_gil:
                    spy = start_py_spy(
                        worker.pid, results_dir(args), args.name, gil=args.profile_gil
                    )
            else:
                dispatcher = InProcessDispatcher(settings)
                # warm the search path and the encoder at this shape, outside the clock
                model.embed_text(stories[:8])
            cpu0 = process_cpu_s(worker.pid) if worker is not None else None
            with stopwatch() as t_job:
                job = submit_match(
                    rt,
                    TENANT,
                    ((f"s{i}", text) for i, text in enumerate(stories)),
                    MatchParams(catalogue=CATALOGUE, top_k=args.top_k),
                    settings,
                )
                dispatcher.dispatch(job)
                final = wait_job(rt, job.id, args.timeout)
            cpu1 = process_cpu_s(worker.pid) if worker is not None else None
            worker_cpu_s = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
            if final.state != "succeeded":
                raise SystemExit(f"the job ended {final.state}: {final}")
            ok = rt.jobs.done_indexes(TENANT, job.id, list(range(len(stories))))
            if len(ok) != len(stories):
                raise SystemExit(f"the job recorded {len(ok)} of {len(stories)} results")
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait(timeout=60)
            if worker is not None:
                stop_process(worker)
            if isinstance(dispatcher, InProcessDispatcher):
                dispatcher.shutdown(wait=True)
            close_contexts()
            close_vector_stores()
        worker_tail = worker_log.read_text(errors="replace")[-2000:] if worker_log.is_file() else ""

    n = len(stories)
    job_s, bare_s = t_job[0].wall_s, bare.wall_s
    job_cpu_s = t_job[0].cpu_s if args.execution == "inprocess" else worker_cpu_s
    results: dict[str, Any] = {
        **run_record(NAME, "cpu", load),
        "config": {
            "stories": n,
            "story_source": source,
            "segments": len(segments),
            "tracks": args.tracks,
            "top_k": args.top_k,
            "execution": args.execution,
            "broker": args.broker_url if args.execution == "celery" else None,
            "concurrency": args.concurrency if args.execution == "celery" else 2,
            "worker_streams": args.worker_streams if args.execution == "celery" else None,
            "torch_threads": torch.get_num_threads(),
            "database": settings.resolved_database_url.split(":", 1)[0],
            "job_chunk_size": settings.queue.job_chunk_size,
            "batch_size": settings.batch.text,
            "text_backend": encoder.backend,
            "vector_backend": resolve_vector_backend(settings),
            "quick": args.quick,
        },
        "model": model_record,
        "loads_s": {"text_encoder": round(t_load[0].wall_s, 3)},
        "job": {
            "wall_s": round(job_s, 3),
            "stories_per_s": n / job_s,
            "segments_per_s": len(segments) / job_s,
            "cpu_util_this_process": round(t_job[0].cpu_util, 2),
            # The worker's CPU seconds over the job (celery): cores it kept busy on average.
            "worker_cpu_s": None if worker_cpu_s is None else round(worker_cpu_s, 2),
            "worker_cpu_util": None if worker_cpu_s is None else round(worker_cpu_s / job_s, 2),
        },
        "bare_encoder": {
            "wall_s": round(bare_s, 3),
            "stories_per_s": n / bare_s,
            "segments_per_s": len(segments) / bare_s,
            "tokens": batches.real_tokens,
            "padded_tokens": batches.padded_tokens,
            "batches": "all segments sorted by length, then cut (the least padding possible)",
            "cpu_util": round(bare.cpu_util, 2),
        },
        "bare_encoder_job_batches": {
            "wall_s": round(bare_job.wall_s, 3),
            "stories_per_s": n / bare_job.wall_s,
            "segments_per_s": len(segments) / bare_job.wall_s,
            "padded_tokens": job_batches.padded_tokens,
            "batches": "the job's: per chunk, its segments sorted by length inside",
            "cpu_util": round(bare_job.cpu_util, 2),
        },
        "ratio": round(bare_s / job_s, 4),
        "ratio_same_batches": round(bare_job.wall_s / job_s, 4),
        # CPU seconds of the bare forward over those of the job: this process's in process,
        # the worker process's through Celery (the job may use more cores than the
        # one-stream bare forward).
        "ratio_per_cpu_second": (None if job_cpu_s is None else round(bare.cpu_s / job_cpu_s, 4)),
        "ratio_same_batches_per_cpu_second": (
            None if job_cpu_s is None else round(bare_job.cpu_s / job_cpu_s, 4)
        ),
        "target_ratio": TARGET_RATIO,
        "worker_log_tail": worker_tail if args.execution == "celery" else None,
    }
    path = write_results(
        args.name or (NAME if args.execution == "inprocess" else f"{NAME}-celery"),
        results,
        results_dir(args),
    )
    print(
        f"job: {results['job']['stories_per_s']:.1f} stories/s; bare encoder "
        f"{results['bare_encoder']['stories_per_s']:.1f} stories/s (in the job's batches "
        f"{results['bare_encoder_job_batches']['stories_per_s']:.1f}); ratio "
        f"{results['ratio']:.3f}, same batches {results['ratio_same_batches']:.3f} "
        f"(target >= {TARGET_RATIO}); worker CPU {results['job']['worker_cpu_util']} cores"
    )
    print(f"wrote {path} and SUMMARY.md", file=sys.stderr)
    return results


def summary_section(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    quick = quick_note(cfg)
    job, bare = r["job"], r["bare_encoder"]
    cpu_owner = "worker" if cfg["execution"] == "celery" else "process"
    where = (
        f"through the Celery broker ({cfg['broker']}) to one text worker process "
        f"(concurrency {cfg['concurrency']}"
        + (
            f", {cfg['worker_streams']} forward streams"
            if (cfg.get("worker_streams") or 1) > 1
            else ""
        )
        + (
            f", {cfg['torch_threads']} forward thread{'s' if cfg['torch_threads'] > 1 else ''}"
            f" on {r['environment'].get('usable_cpus', '?')} CPUs"
        )
        + ")"
        if cfg["execution"] == "celery"
        else "in the in-process dispatcher (embedded mode, 2 job threads)"
    )
    return [
        f"## Bulk matching: a {cfg['stories']:,}-story job end to end vs the bare text encoder "
        f"({cfg['execution']})",
        "",
        f"{cfg['stories']:,} stories ({cfg['story_source']}, {cfg['segments']:,} segments) "
        f"matched {where}, chunks of {cfg['job_chunk_size']} stories, against a catalogue of "
        f"{cfg['tracks']:,} tracks ({cfg['vector_backend']}), top {cfg['top_k']}; text runtime "
        f"`{cfg['text_backend']}`; results in {cfg.get('database', 'sqlite')}.{quick}",
        "",
        "| path | stories/s | segments/s | wall s |",
        "|---|---:|---:|---:|",
        f"| (a) job: submit, segment, embed, search, record results | "
        f"{fmt(job['stories_per_s'], 1)} | {fmt(job['segments_per_s'], 1)} | "
        f"{fmt(job['wall_s'], 1)} |",
        f"| (b1) bare text encoder forward, same segments sorted by length | "
        f"{fmt(bare['stories_per_s'], 1)} | {fmt(bare['segments_per_s'], 1)} | "
        f"{fmt(bare['wall_s'], 1)} |",
        *(
            [
                f"| (b2) bare text encoder forward, in the job's batches | "
                f"{fmt(jb['stories_per_s'], 1)} | {fmt(jb['segments_per_s'], 1)} | "
                f"{fmt(jb['wall_s'], 1)} |"
            ]
            if (jb := r.get("bare_encoder_job_batches"))
            else []
        ),
        "",
        verdict(r, "(a)/(b1)")
        + (
            f"; (a)/(b2), same batches: {fmt(r['ratio_same_batches'], 3)}."
            if "ratio_same_batches" in r
            else "."
        )
        + (
            f" Per CPU second (the job's {cpu_owner} runs chunks in parallel threads, the bare "
            f"forward is one stream): (a)/(b1) {fmt(r['ratio_per_cpu_second'], 3)}, (a)/(b2) "
            f"{fmt(r['ratio_same_batches_per_cpu_second'], 3)}."
            if r.get("ratio_per_cpu_second")
            else ""
        ),
        *footer(r),
    ]


if __name__ == "__main__":
    main()
