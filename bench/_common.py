"""Helpers shared by the benchmark scripts: machine metadata, load checks, timing statistics,
the emotion checkpoint to run with, and the combined Markdown summary.

Not a package module: running ``python bench/<name>.py`` puts ``bench/`` first on ``sys.path``,
which is how the scripts import it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SUMMARY_NAME = "SUMMARY.md"

#: 1-minute load average above which a run waits (other work would disturb the timings).
DEFAULT_MAX_LOAD = 1.5


# ---- timing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timed:
    """Wall and process-CPU seconds of one timed block."""

    wall_s: float
    cpu_s: float

    @property
    def cpu_util(self) -> float:
        """CPU seconds per wall second of this process (all threads); ≈ threads when unstarved."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@contextmanager
def stopwatch(sync: Callable[[], None] | None = None) -> Iterator[list[Timed]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the :class:`Timed` of the block.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before both clock readings, so queued
    device work is counted where it belongs.
    """
    box: list[Timed] = []
    if sync is not None:
        sync()
    w0, c0 = time.perf_counter(), time.process_time()
    yield box
    if sync is not None:
        sync()
    box.append(Timed(time.perf_counter() - w0, time.process_time() - c0))


def device_sync(device: str) -> Callable[[], None] | None:
    """The synchronisation a timer needs on ``device`` (None on CPU)."""
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return None


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and every value (rounded) of repeated measurements."""
    return {
        "median": round(statistics.median(values), 6),
        "min": round(min(values), 6),
        "max": round(max(values), 6),
        "values": [round(v, 6) for v in values],
    }


def median_of(timings: Sequence[Timed]) -> Timed:
    """The repeat with the median wall time (its CPU time travels with it)."""
    ordered = sorted(timings, key=lambda t: t.wall_s)
    return ordered[(len(ordered) - 1) // 2]


# ---- machine and run metadata -------------------------------------------------------------
def git_commit() -> dict[str, Any] | None:
    """HEAD and whether the tree has local changes; None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(device: str) -> dict[str, Any]:
    """Everything that makes a number comparable: versions, threads, CPUs, date, commit."""
    env: dict[str, Any] = {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def wait_for_quiet(max_load: float, max_wait_s: float, poll_s: float = 10.0) -> dict[str, Any]:
    """Wait (up to ``max_wait_s``) until the 1-minute load average is at most ``max_load``.

    Returns what was seen, for the results: the load at the start, after waiting, the seconds
    waited and whether the machine was still busy when the run began anyway.
    """
    first = loadavg()
    if first is None:
        return {"load_before": None, "waited_s": 0.0, "busy_at_start": None}
    waited = 0.0
    current = first
    while current[0] > max_load and waited < max_wait_s:
        if waited == 0.0:
            print(
                f"load average {current[0]:.2f} > {max_load:g}: waiting up to "
                f"{max_wait_s:.0f} s for the machine to quieten",
                file=sys.stderr,
            )
        step = min(poll_s, max_wait_s - waited)
        time.sleep(step)
        waited += step
        current = loadavg() or current
    busy = current[0] > max_load
    if busy:
        print(
            f"warning: load average still {current[0]:.2f} after {waited:.0f} s; running anyway "
            "(timings are recorded with the load, treat them as pessimistic)",
            file=sys.stderr,
        )
    return {
        "load_first_seen": first,
        "load_before": current,
        "waited_s": round(waited, 1),
        "max_load": max_load,
        "busy_at_start": busy,
    }


# ---- emotion checkpoint -------------------------------------------------------------------
SHIPPED_MODEL = "va-regression"


def resolve_emotion_checkpoint(requested: str | None, scratch: Path) -> tuple[str, dict[str, Any]]:
    """The checkpoint to benchmark with, and a record of which one it is.

    ``requested`` (a name or path) wins; otherwise the shipped ``va-regression`` model when it
    is installed; otherwise a throwaway checkpoint with random heads written under
    ``scratch`` (same shapes as the shipped one, so the timings are the same; its outputs
    mean nothing).
    """
    from storycue.errors import ModelNotFoundError
    from storycue.models.checkpoints import checkpoint_info, file_sha256, resolve_checkpoint

    name = requested or SHIPPED_MODEL
    try:
        path = resolve_checkpoint(name)
        kind = "requested" if requested else "shipped"
    except ModelNotFoundError:
        if requested:
            raise
        path = build_random_checkpoint(scratch / "bench-random-heads.safetensors")
        kind = "random-heads (shipped va-regression not found; timing only)"
    info = checkpoint_info(path)
    return str(path), {
        "kind": kind,
        "path": str(path),
        "identity": info.identity.key,
        "sha256": file_sha256(path),
        "family": info.family,
        "distance": info.distance,
        "heads": {role: cfg.model_dump() for role, cfg in info.heads.items()},
        "audio_features": info.audio_features,
    }


def build_random_checkpoint(path: Path) -> Path:
    """A valid checkpoint with randomly initialised heads of the shipped model's shapes."""
    from storycue.config import DEFAULT_AUDIO_BACKBONE
    from storycue.identity import ModelIdentity
    from storycue.models.checkpoints import CheckpointInfo, EmotionHeads
    from storycue.models.heads import HeadConfig, MLPHead
    from storycue.models.musicnn import MUSICNN_VERSION

    torch.manual_seed(0)
    features = ["penultimate", "mean_pool", "max_pool"]
    text_cfg = HeadConfig(in_dim=384, out_dim=2)
    audio_cfg = HeadConfig(in_dim=200 + 753 + 753, out_dim=2)
    info = CheckpointInfo(
        identity=ModelIdentity(name="bench-random-heads", version="0.0.0", dim=2),
        family="va-regression",
        distance="euclid",
        text_encoder="sentence-transformers/all-MiniLM-L6-v2",
        audio_backbone=DEFAULT_AUDIO_BACKBONE,
        audio_backbone_version=MUSICNN_VERSION,
        audio_features=features,
        heads={"text": text_cfg, "audio": audio_cfg},
        va_axes=True,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    heads = {"text": MLPHead(text_cfg), "audio": MLPHead(audio_cfg)}
    EmotionHeads(info=info, heads=heads).save(path)
    return path


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="storycue-bench-")


# ---- results ------------------------------------------------------------------------------
def write_results(name: str, results: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<results_dir>/<name>.json`` and regenerate the combined ``SUMMARY.md``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    write_summary(results_dir)
    return path


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _loads(r: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in r["loads_s"].items())


def _env_line(r: dict[str, Any]) -> str:
    env = r["environment"]
    git = env.get("git") or {}
    commit = (git.get("commit") or "none")[:10] + (" (dirty)" if git.get("dirty") else "")
    load = r.get("load", {})
    return (
        f"{env['date_utc']} · commit {commit} · torch {env['torch']} · "
        f"{env['torch_threads']} torch threads · {env['usable_cpus']} CPUs "
        f"({env.get('cpu_model') or 'unknown CPU'}) · device {env['device']} · "
        f"load {load.get('load_before')} before, {load.get('load_after')} after"
    )


def _ingest_section(r: dict[str, Any]) -> list[str]:
    full, bare = r["full_pipeline"], r["bare_backbone"]
    lines = [
        "## Ingest: `Engine.ingest` vs bare backbone forward",
        "",
        f"{r['config']['clips']} real 4Q clips ({_fmt(r['config']['audio_seconds'], 1)} s of "
        f"audio), median of {r['config']['repeats']} repeats; emotion model: "
        f"{r['model']['kind']} (`{r['model']['identity']}`)."
        + (" **Quick smoke run: not a measurement to quote.**" if r["config"].get("quick") else ""),
        "",
        "| path | clips/s | real-time factor | ms per clip |",
        "|---|---:|---:|---:|",
        f"| (a) full ingest (decode, resample, mel, backbone, head, store) | "
        f"{_fmt(full['clips_per_s'])} | {_fmt(full['rtf'], 1)}× | "
        f"{_fmt(full['ms_per_clip'], 0)} |",
        f"| (b) bare `forward_patches` on precomputed mel patches | "
        f"{_fmt(bare['clips_per_s'])} | {_fmt(bare['rtf'], 1)}× | "
        f"{_fmt(bare['ms_per_clip'], 0)} |",
        "",
        f"**Ratio (a)/(b): {_fmt(r['ratio'], 3)}** (target ≥ {r['target_ratio']}: "
        f"{'met' if r['ratio'] >= r['target_ratio'] else 'not met'}).",
        "",
        "Stage breakdown of (a), each stage timed on its own over the same clips:",
        "",
        "| stage | ms per clip | share |",
        "|---|---:|---:|",
    ]
    stages = r["stages"]
    for name, s in stages["per_stage"].items():
        lines.append(f"| {name} | {_fmt(s['ms_per_clip'], 1)} | {_fmt(100 * s['share'], 1)} % |")
    lines += [
        f"| **sum of stages** | **{_fmt(stages['sum_ms_per_clip'], 1)}** | 100 % |",
        "",
        f"Model loads and warm-up (excluded above): {_loads(r)}.",
        "",
        f"_{_env_line(r)}_",
        "",
    ]
    return lines


def _text_section(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    quick = " **Quick smoke run: not a measurement to quote.**" if cfg.get("quick") else ""
    lines = [
        "## Text: the text paths vs the bare encoder forward",
        "",
        f"Median of {cfg['repeats']} repeats, batch size {cfg['batch_size']}; emotion model: "
        f"{r['model']['kind']} (`{r['model']['identity']}`). Per runtime (`torch` eager, "
        "`onnx` ONNX Runtime): (a) `EmotionModel.embed_text` vs (b) the bare forward of the "
        f"same runtime on the same batches; (c) the text worker's micro-batcher with "
        f"{cfg.get('clients')} concurrent requests of {cfg.get('request_size')} segments "
        "(in-process, the queue is in the bulk benchmark) vs (d) the bare forward on the "
        f"batches (c) formed.{quick}",
        "",
        "| runtime/input | segments | mean tokens | (a) seg/s | (b) seg/s | **(a)/(b)** | "
        "(c) seg/s | (d) seg/s | **(c)/(d)** |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in r["workloads"].items():
        a, b = w["embed_text"], w["bare_encoder"]
        c, d = w.get("worker_batching"), w.get("bare_on_worker_batches")
        lines.append(
            f"| {name} | {w['segments']} | {_fmt(w['mean_tokens'], 1)} | "
            f"{_fmt(a['segments_per_s'], 1)} | {_fmt(b['segments_per_s'], 1)} | "
            f"**{_fmt(w['ratio'], 3)}** | "
            f"{_fmt(c['segments_per_s'] if c else None, 1)} | "
            f"{_fmt(d['segments_per_s'] if d else None, 1)} | "
            f"**{_fmt(w.get('worker_ratio'), 3)}** |"
        )
    cross = r.get("onnx_vs_torch") or {}
    if cross:
        lines += [
            "",
            "ONNX Runtime against eager PyTorch on the same segments: "
            + "; ".join(
                f"{name}: bare forward ×{_fmt(x['bare_onnx_over_bare_torch'])}, "
                f"embed_text (onnx) over bare torch ×{_fmt(x['embed_text_onnx_over_bare_torch'])}"
                for name, x in cross.items()
            )
            + ".",
        ]
    first = next(iter(r["workloads"].values()))
    lines += ["", f"Target ratio ≥ {r['target_ratio']}. Breakdown of (a) per workload (ms):", ""]
    lines += ["| runtime/input | " + " | ".join(first["breakdown_ms"]) + " |"]
    lines += ["|---|" + "---:|" * len(first["breakdown_ms"])]
    for name, w in r["workloads"].items():
        lines.append(
            f"| {name} | " + " | ".join(_fmt(v, 1) for v in w["breakdown_ms"].values()) + " |"
        )
    lines += ["", f"Model loads (excluded above): {_loads(r)}.", "", f"_{_env_line(r)}_", ""]
    return lines


def _search_section(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    quick = " **Quick smoke run: not a measurement to quote.**" if cfg.get("quick") else ""
    top_k = cfg["top_k"]
    lines = [
        f"## Search: vector store{' and `POST /v1/search`' if cfg.get('api') else ''} "
        f"vs exact numpy scan ({cfg['dim']}-d, {cfg['distance']})",
        "",
        f"Synthetic {cfg['dim']}-d vectors ({cfg['vectors']}) spread over "
        f"{cfg['catalogues']} catalogues; the filter keeps one catalogue (a tenth of the "
        f"tracks). Up to {cfg['queries']} queries per case, top {top_k}; latencies in ms; "
        f"speed-up = scan p50 / store p50; recall@{top_k} of the store against the exact "
        f"scan.{quick}",
        "",
        f"| backend | tracks | filter | store p50 | store p99 | scan p50 | scan p99 | "
        f"speed-up | recall@{top_k} |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    api_rows: list[str] = []
    inserts: list[str] = []
    for backend, res in r["backends"].items():
        for size, case in res["sizes"].items():
            for label, c in case["search"].items():
                st, sc = c["store"], c["exact_numpy_scan"]
                lines.append(
                    f"| {backend} | {int(size):,} | {label.replace('_', ' ')} | "
                    f"{_fmt(st['p50_ms'], 3)} | {_fmt(st['p99_ms'], 3)} | "
                    f"{_fmt(sc['p50_ms'], 3)} | {_fmt(sc['p99_ms'], 3)} | "
                    f"×{_fmt(c['speedup_p50'])} | {_fmt(c.get(f'recall_at_{top_k}'), 3)} |"
                )
            ins = case["insert"]
            build = f", index build {ins['index_build_s']:.1f} s" if "index_build_s" in ins else ""
            inserts.append(f"{backend} {int(size):,}: upsert {ins['upsert_s']:.1f} s{build}")
            for label, a in (case.get("api") or {}).items():
                api_rows.append(
                    f"| {backend} | {int(size):,} | {label.replace('_', ' ')} | "
                    f"{_fmt(a['p50_ms'])} | {_fmt(a['p90_ms'])} | {_fmt(a['p99_ms'])} |"
                )
    if api_rows:
        lines += [
            "",
            "`POST /v1/search` in process (one-sentence stories, top 10; the latency includes "
            "segmenting and encoding the story, whose encoder forward alone is the last row "
            "of each size):",
            "",
            "| backend | tracks | request | p50 | p90 | p99 |",
            "|---|---:|---|---:|---:|---:|",
            *api_rows,
        ]
    lines += [
        "",
        f"Target: p99 ≤ {r['target_p99_ms']:g} ms at 100k tracks with a catalogue filter "
        "(embedded mode). Inserts (points added at this size, excluded above): "
        + "; ".join(inserts)
        + ".",
        "",
        f"_{_env_line(r)}_",
        "",
    ]
    return lines


def _bulk_section(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    quick = " **Quick smoke run: not a measurement to quote.**" if cfg.get("quick") else ""
    job, bare = r["job"], r["bare_encoder"]
    where = (
        f"through the Celery broker ({cfg['broker']}) to one text worker process "
        f"(concurrency {cfg['concurrency']})"
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
        f"`{cfg['text_backend']}`.{quick}",
        "",
        "| path | stories/s | segments/s | wall s |",
        "|---|---:|---:|---:|",
        f"| (a) job: submit, segment, embed, search, record results | "
        f"{_fmt(job['stories_per_s'], 1)} | {_fmt(job['segments_per_s'], 1)} | "
        f"{_fmt(job['wall_s'], 1)} |",
        f"| (b1) bare text encoder forward, same segments sorted by length | "
        f"{_fmt(bare['stories_per_s'], 1)} | {_fmt(bare['segments_per_s'], 1)} | "
        f"{_fmt(bare['wall_s'], 1)} |",
        *(
            [
                f"| (b2) bare text encoder forward, in the job's batches | "
                f"{_fmt(jb['stories_per_s'], 1)} | {_fmt(jb['segments_per_s'], 1)} | "
                f"{_fmt(jb['wall_s'], 1)} |"
            ]
            if (jb := r.get("bare_encoder_job_batches"))
            else []
        ),
        "",
        f"**Ratio (a)/(b1): {_fmt(r['ratio'], 3)}** (target ≥ {r['target_ratio']}: "
        f"{'met' if r['ratio'] >= r['target_ratio'] else 'not met'})"
        + (
            f"; (a)/(b2), same batches: {_fmt(r['ratio_same_batches'], 3)}."
            if "ratio_same_batches" in r
            else "."
        )
        + (
            f" Per CPU second (the job runs chunks in parallel threads, the bare forward is "
            f"one stream): (a)/(b1) {_fmt(r['ratio_per_cpu_second'], 3)}, (a)/(b2) "
            f"{_fmt(r['ratio_same_batches_per_cpu_second'], 3)}."
            if r.get("ratio_per_cpu_second")
            else ""
        ),
        "",
        f"_{_env_line(r)}_",
        "",
    ]


def _ingest_path_rows(
    r: dict[str, Any], run: dict[str, Any], label: str, process: str
) -> list[str]:
    """The table and ratio of an ingest path measured beside the bare backbone."""
    bare = r["bare_backbone"]
    return [
        f"| path | clips/s | real-time factor | {process} CPU s | CPU util |",
        "|---|---:|---:|---:|---:|",
        f"| (a) {label} | {_fmt(run['clips_per_s'])} | {_fmt(run['real_time_factor'], 1)}× | "
        f"{_fmt(run.get('worker_cpu_s', run.get('cpu_s')))} | "
        f"{_fmt(run.get('worker_cpu_util', run.get('cpu_util')))} |",
        f"| (b) bare backbone forward, same clips, same run | {_fmt(bare['clips_per_s'])} | – | – "
        f"| {_fmt(bare.get('cpu_util'))} |",
        "",
        f"**Ratio (a)/(b): {_fmt(r['ratio'], 3)}** (target ≥ {r['target_ratio']}: "
        f"{'met' if r['ratio'] >= r['target_ratio'] else 'missed'}).",
        "",
        f"_{_env_line(r)}_",
        "",
    ]


def _ingest_celery_section(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    return [
        "## Ingest through Celery: an ingest job to the audio worker vs bare backbone forward",
        "",
        f"{cfg['clips']} real 4Q clips ({cfg['audio_s']:,.1f} s of audio) through "
        f"`{cfg['broker']}` to one audio worker (concurrency {cfg['concurrency']}, "
        f"{cfg['audio_patches']} patches per batch).",
        "",
        *_ingest_path_rows(r, r["job"], "ingest job through the Celery audio worker", "worker"),
    ]


def _ingest_kafka_section(r: dict[str, Any]) -> list[str]:
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
        *_ingest_path_rows(r, run, "events through the ingest consumer", "consumer"),
    ]


_SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "ingest": _ingest_section,
    "ingest-celery": _ingest_celery_section,
    "ingest-kafka": _ingest_kafka_section,
    "text": _text_section,
    "search": _search_section,
    "bulk": _bulk_section,
}


def _result_files(results_dir: Path) -> list[tuple[str, Path]]:
    """``(section, path)`` of every result file, in section order (``search-128d.json`` is
    a ``search`` section)."""
    out: list[tuple[str, Path]] = []
    for name in _SECTIONS:
        exact = results_dir / f"{name}.json"
        if exact.is_file():
            out.append((name, exact))
        # Variants of a section (search-128d.json), not another section (ingest-celery).
        out += [
            (name, p) for p in sorted(results_dir.glob(f"{name}-*.json")) if p.stem not in _SECTIONS
        ]
    return out


def write_summary(results_dir: Path = RESULTS_DIR) -> Path:
    """Regenerate ``SUMMARY.md`` from every ``<name>.json`` present in ``results_dir``."""
    lines = [
        "# storycue throughput benchmarks",
        "",
        "Generated by `bench/*.py` (see `bench/README.md`); do not edit by hand. Each pipeline "
        "is measured beside the bare model on the same inputs in the same run; the ratio "
        "(pipeline throughput / bare-model throughput) is the share of the model's speed the "
        "pipeline keeps.",
        "",
    ]
    for name, path in _result_files(results_dir):
        render = _SECTIONS[name]
        try:
            lines += render(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, ValueError, TypeError, StopIteration) as exc:
            lines += [f"## {name}", "", f"_{path.name} could not be rendered: {exc!r}_", ""]
    out = results_dir / SUMMARY_NAME
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return out
