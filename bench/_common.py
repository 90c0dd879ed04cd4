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
    from storycue.models.emotion import checkpoint_info, file_sha256, resolve_checkpoint

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
    from storycue.models.emotion import CheckpointInfo, EmotionHeads
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
        f"{r['model']['kind']} (`{r['model']['identity']}`).",
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
    lines = [
        "## Text: `EmotionModel.embed_text` vs bare encoder forward",
        "",
        f"Median of {r['config']['repeats']} repeats, batch size {r['config']['batch_size']}; "
        f"emotion model: {r['model']['kind']} (`{r['model']['identity']}`).",
        "",
        "| input | segments | mean tokens | (a) embed_text seg/s | (b) bare encoder seg/s | "
        "ratio (a)/(b) | (a) tokens/s | (b) tokens/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in r["workloads"].items():
        full, bare = w["embed_text"], w["bare_encoder"]
        lines.append(
            f"| {name} | {w['segments']} | {_fmt(w['mean_tokens'], 1)} | "
            f"{_fmt(full['segments_per_s'], 1)} | {_fmt(bare['segments_per_s'], 1)} | "
            f"**{_fmt(w['ratio'], 3)}** | {_fmt(full['tokens_per_s'], 0)} | "
            f"{_fmt(bare['tokens_per_s'], 0)} |"
        )
    lines += ["", f"Target ratio ≥ {r['target_ratio']}. Breakdown of (a) per workload (ms):", ""]
    lines += ["| input | " + " | ".join(next(iter(r["workloads"].values()))["breakdown_ms"]) + " |"]
    lines += ["|---|" + "---:|" * len(next(iter(r["workloads"].values()))["breakdown_ms"])]
    for name, w in r["workloads"].items():
        lines.append(
            f"| {name} | " + " | ".join(_fmt(v, 1) for v in w["breakdown_ms"].values()) + " |"
        )
    lines += ["", f"Model loads (excluded above): {_loads(r)}.", "", f"_{_env_line(r)}_", ""]
    return lines


_SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "ingest": _ingest_section,
    "text": _text_section,
}


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
    for name, render in _SECTIONS.items():
        path = results_dir / f"{name}.json"
        if not path.is_file():
            continue
        try:
            lines += render(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, ValueError, TypeError, StopIteration) as exc:
            lines += [f"## {name}", "", f"_{path.name} could not be rendered: {exc!r}_", ""]
    out = results_dir / SUMMARY_NAME
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return out
