"""Ingest throughput: the full ``Engine.ingest`` path beside the bare musicnn forward.

(a) ``Engine.ingest`` of N real 4Q clips into a fresh temporary ``STORYCUE_HOME`` (hash,
    decode, resample, mel, backbone, head, SQLite + the embedded vector store), one fresh home per
    repeat; (b) ``MusicnnBackbone.forward_patches`` alone on the same clips' mel patches
    (computed beforehand), in the batches ``embed_waveform`` uses. The ratio (a)/(b) of
    clips per second is the share of the model's speed the pipeline keeps. A per-stage
    breakdown of (a) times each stage on its own over the same clips.

Run from the repository root: ``python bench/ingest.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from _harness import (
    Timed,
    add_model_arguments,
    add_run_arguments,
    device_sync,
    loadavg,
    median_of,
    resolve_emotion_checkpoint,
    results_dir,
    run_record,
    scratch_dir,
    stopwatch,
    summarise,
    wait_for_quiet,
    write_results,
)
from _report import fmt, footer, loads, quick_note, verdict
from storycue.audio.decode import DecodedAudio, load_audio
from storycue.audio.mel import MelFrontend
from storycue.config import Settings
from storycue.log import configure_logging
from storycue.models.emotion import EmotionModel, load_emotion_model
from storycue.models.musicnn import MusicnnBackbone
from storycue.models.musicnn.backbone import PatchPool
from storycue.pipeline.engine import Engine, PreparedFile
from storycue.pipeline.ingest import sha256_file

NAME = "ingest"
TARGET_RATIO = 0.8
STAGES = ("hash+lookup", "decode+resample", "mel", "backbone", "head", "store")


# ---- inputs ---------------------------------------------------------------------------------
def pick_clips(fourq_dir: Path, n: int) -> list[Path]:
    """``n`` clips spread evenly over the quadrants (round-robin Q1..Q4) and within each."""
    quadrants = [sorted((fourq_dir / f"Q{q}").glob("*.mp3")) for q in range(1, 5)]
    if not all(quadrants):
        raise SystemExit(f"4Q clips not found under {fourq_dir}/Q1..Q4 (use --data-dir)")
    per_q = [n // 4 + (1 if q < n % 4 else 0) for q in range(4)]
    chosen: list[list[Path]] = []
    for files, k in zip(quadrants, per_q, strict=True):
        if k > len(files):
            raise SystemExit(f"asked for {k} clips of a quadrant holding {len(files)}")
        step = len(files) / max(k, 1)
        chosen.append([files[int(i * step)] for i in range(k)])
    out: list[Path] = []
    for i in range(max(per_q)):
        out.extend(q[i] for q in chosen if i < len(q))
    return out


def fourq_clips(base: Settings, n: int) -> tuple[Path, list[Path]]:
    """The 4Q folder of ``base``'s data directory and ``n`` clips of it (exits without it)."""
    if base.data_dir is None or not (base.data_dir / "4q").is_dir():
        raise SystemExit("needs the 4Q clips: set STORYCUE_DATA_DIR (default ../shared/data)")
    folder = (base.data_dir / "4q").resolve()
    return folder, pick_clips(folder, n)


def bare_backbone_run(
    checkpoint: str, clips: list[Path], settings: Settings
) -> tuple[float, Timed]:
    """(b) of the distributed ingest benchmarks, run in this process before (a): the clips'
    audio seconds and the bare backbone's forward on their precomputed mel patches (after a
    warm-up on the first clip)."""
    model = load_emotion_model(checkpoint, device="cpu")
    backbone = cast(MusicnnBackbone, model.audio_backbone())
    decoded = [load_audio(c, settings=settings) for c in clips]
    audio_s = float(sum(a.duration_s for a in decoded))
    patches = [log_mel_patches(backbone, a.waveform) for a in decoded]
    run_bare(patches[:1], backbone, settings.batch.audio_patches, None)  # warm-up
    bare = run_bare(patches, backbone, settings.batch.audio_patches, None)
    print(f"bare backbone: {bare.wall_s:.2f} s for {len(clips)} clips", file=sys.stderr)
    return audio_s, bare


def path_against_bare(
    clips: int, audio_s: float, wall_s: float, cpu_s: float | None, bare: Timed, cpu_key: str
) -> dict[str, Any]:
    """The run of a distributed ingest path (its process's CPU under ``<cpu_key>_s`` and
    ``<cpu_key>_util``), the bare backbone's and their ratio."""
    return {
        "run": {
            "wall_s": round(wall_s, 3),
            "clips_per_s": clips / wall_s,
            "real_time_factor": audio_s / wall_s,
            f"{cpu_key}_s": None if cpu_s is None else round(cpu_s, 2),
            f"{cpu_key}_util": None if cpu_s is None else round(cpu_s / wall_s, 2),
        },
        "bare_backbone": {
            "wall_s": round(bare.wall_s, 3),
            "clips_per_s": clips / bare.wall_s,
            "cpu_util": round(bare.cpu_util, 2),
        },
        "ratio": round(bare.wall_s / wall_s, 4),
        "target_ratio": TARGET_RATIO,
    }


@dataclass(frozen=True)
class DistributedIngest:
    """A distributed ingest benchmark's measurements around its path: the clips, the bare
    backbone's run beside it, and where its result goes (``run_key``: the path's run in
    the result; ``cpu_key``: the name of its process's CPU figures; ``log_key``: the
    process's log tail)."""

    name: str
    args: argparse.Namespace
    load: dict[str, Any]
    model_record: dict[str, Any]
    clips: int
    audio_s: float
    bare: Timed
    audio_patches: int
    run_key: str
    cpu_key: str
    log_key: str

    def write(
        self,
        config: dict[str, Any],
        wall_s: float,
        cpu_s: float | None,
        log_tail: str,
        run_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write (and print) the result: ``config`` after the clips, their audio seconds
        and the patches per batch; the path's run beside the bare backbone; their ratio;
        the end of the process's log."""
        n, audio_s = self.clips, self.audio_s
        measured = path_against_bare(n, audio_s, wall_s, cpu_s, self.bare, self.cpu_key)
        results: dict[str, Any] = {
            **run_record(self.name, "cpu", self.load),
            "config": {
                "clips": n,
                "audio_s": round(audio_s, 1),
                "audio_patches": self.audio_patches,
                **config,
            },
            "model": self.model_record,
            self.run_key: {**(run_extra or {}), **measured["run"]},
            "bare_backbone": measured["bare_backbone"],
            "ratio": measured["ratio"],
            "target_ratio": measured["target_ratio"],
            self.log_key: log_tail,
        }
        path = write_results(self.name, results, results_dir(self.args))
        print(
            f"{self.run_key}: {n / wall_s:.2f} clips/s ({audio_s / wall_s:.1f}x real time), "
            f"{results[self.run_key][f'{self.cpu_key}_util']} cores; bare backbone "
            f"{n / self.bare.wall_s:.2f} clips/s; ratio {results['ratio']:.3f} "
            f"(target >= {TARGET_RATIO})"
        )
        print(f"wrote {path}", file=sys.stderr)
        return results


def settings_for(home: Path, checkpoint: str, device: str, base: Settings) -> Settings:
    """Settings on a fresh embedded home; explicit arguments beat any STORYCUE_* variable,
    so a configured server database or Qdrant is never touched."""
    return Settings(
        home=home,
        database_url=None,
        qdrant_url=None,
        qdrant_path=None,
        emotion_model=checkpoint,
        device=device,
        data_dir=base.data_dir,
        batch=base.batch,
        limits=base.limits,
        musicnn_weights_dir=base.musicnn_weights_dir,
        log_level=base.log_level,
    )


def close_engine(engine: Engine) -> None:
    engine.close()
    engine.vectors.close()


# ---- (a) full pipeline ----------------------------------------------------------------------
@dataclass
class FullRun:
    ingest: Timed
    store_open_s: float
    completion_intervals_s: list[float]


def run_full(clips: list[Path], settings: Settings, model: EmotionModel, sync: Any) -> FullRun:
    with stopwatch() as opened:
        engine = Engine(settings, model=model)
    stamps: list[float] = []

    def progress(done: int, total: int, name: str) -> None:
        stamps.append(time.perf_counter())

    try:
        with stopwatch(sync) as t:
            start = time.perf_counter()
            report = engine.ingest(clips, progress=progress)
    finally:
        close_engine(engine)
    if report.failed or report.embedded != len(clips):
        raise RuntimeError(f"ingest did not embed every clip: {report.to_dict()}")
    intervals = list(np.diff([start, *stamps]))
    return FullRun(t[0], opened[0].wall_s, [float(x) for x in intervals])


# ---- (b) bare backbone ----------------------------------------------------------------------
def run_bare(patches: list[torch.Tensor], backbone: MusicnnBackbone, bs: int, sync: Any) -> Timed:
    with torch.inference_mode(), stopwatch(sync) as t:
        for p in patches:
            for i in range(0, p.shape[0], bs):
                backbone.forward_patches(p[i : i + bs])
    return t[0]


# ---- stage breakdown ------------------------------------------------------------------------
class _PrecomputedEmbedding:
    """Stands in for the EmotionModel inside ``Engine._store`` so that only the store work
    (metadata rows, reading the point, vector upsert) is timed: ``embed_waveform`` returns
    the vector computed in the earlier stages; everything else goes to the real model."""

    def __init__(self, model: EmotionModel) -> None:
        self._model = model
        self.current: np.ndarray | None = None

    def embed_waveform(self, waveform_16k: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        assert self.current is not None
        return self.current, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def backbone_features(
    backbone: MusicnnBackbone, patches: torch.Tensor, bs: int
) -> dict[str, np.ndarray]:
    """What ``embed_waveform`` does after the mel: batched forward, mean (and tag max) over
    patches. Mirrors ``MusicnnBackbone.embed_waveform``; checked against it before timing."""
    pool = PatchPool()
    with torch.inference_mode():
        for i in range(0, patches.shape[0], bs):
            pool.add(backbone.forward_patches(patches[i : i + bs]))
    return pool.result()


def log_mel_patches(backbone: MusicnnBackbone, waveform: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        wave = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        return MelFrontend.patches(backbone.mel.logmel_long(wave))


def run_stages(
    clips: list[Path],
    settings: Settings,
    model: EmotionModel,
    backbone: MusicnnBackbone,
    bs: int,
    sync: Any,
) -> dict[str, float]:
    """Seconds per stage, summed over the clips, each stage timed on its own."""
    totals = dict.fromkeys(STAGES, 0.0)
    stand_in = _PrecomputedEmbedding(model)
    engine = Engine(settings, model=cast(EmotionModel, stand_in))
    try:
        cat = engine.metadata.get_or_create_catalogue("default")
        model_id = engine._model_record_id()
        for path in clips:
            with stopwatch() as t_hash:
                sha = sha256_file(path, settings.limits.max_audio_bytes)
                engine.metadata.find_track_by_hash(cat.id, sha)
            with stopwatch() as t_dec:
                audio = load_audio(path, settings=settings)
            with stopwatch(sync) as t_mel:
                patches = log_mel_patches(backbone, audio.waveform)
            with stopwatch(sync) as t_bb:
                feats = backbone_features(backbone, patches, bs)
            with stopwatch(sync) as t_head:
                vector = model.project_audio_features(model.audio_input(feats)[None, :])[0]
                if not np.isfinite(vector).all():
                    raise RuntimeError(f"{path.name}: non-finite vector")
            stand_in.current = vector
            with stopwatch() as t_store:
                engine._store(cat, model_id, PreparedFile(path, sha, audio), None)
            for stage, t in zip(STAGES, (t_hash, t_dec, t_mel, t_bb, t_head, t_store), strict=True):
                totals[stage] += t[0].wall_s
    finally:
        close_engine(engine)
    return totals


# ---- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clips", type=int, default=24, help="number of 4Q clips (default 24)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats, median kept (3)")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="folder holding 4q/ (default: ../shared/data)"
    )
    add_model_arguments(p, threads="torch intra-op threads (default: torch's)")
    add_run_arguments(p, quick="smoke run: 4 clips, 1 repeat, no wait")
    args = p.parse_args(argv)
    if args.quick:
        args.clips, args.repeats, args.max_wait = min(args.clips, 4), 1, 0.0
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.clips < 1 or args.repeats < 1:
        raise SystemExit("--clips and --repeats must be at least 1")
    configure_logging(args.log_level)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = Settings()
    data_dir = args.data_dir or base.data_dir
    if data_dir is None:
        raise SystemExit("no data folder: pass --data-dir (the folder holding 4q/)")
    device = Settings(device=args.device).torch_device()
    sync = device_sync(device)
    clips = pick_clips(Path(data_dir) / "4q", args.clips)
    bs = base.batch.audio_patches
    load = wait_for_quiet(args.max_load, args.max_wait)

    with scratch_dir() as tmp:
        scratch = Path(tmp)
        checkpoint, model_record = resolve_emotion_checkpoint(args.model, scratch)
        print(f"model: {model_record['kind']} ({model_record['identity']})", file=sys.stderr)

        # ---- model loads (excluded from every timing below) ----
        s0 = settings_for(scratch / "home-warmup", checkpoint, device, base)
        with stopwatch() as t_heads:
            model = load_emotion_model(
                checkpoint,
                device=device,
                text_batch_size=s0.batch.text,
                text_max_tokens=s0.text_max_tokens,
                musicnn_weights_dir=s0.musicnn_weights_dir,
            )
        with stopwatch() as t_bb:
            backbone = cast(MusicnnBackbone, model.audio_backbone())

        # ---- inputs for (b): decode and mel outside any timing ----
        decoded: list[DecodedAudio] = [load_audio(c, settings=s0) for c in clips]
        audio_s = float(sum(a.duration_s for a in decoded))
        patches = [log_mel_patches(backbone, a.waveform) for a in decoded]
        n_patches = int(sum(p.shape[0] for p in patches))

        # ---- check that the stage re-implementation matches the model's own path ----
        ref_vec, _ = model.embed_waveform(decoded[0].waveform)
        feats = backbone_features(backbone, patches[0], bs)
        vec = model.project_audio_features(model.audio_input(feats)[None, :])[0]
        if not np.allclose(ref_vec, vec, rtol=1e-4, atol=1e-5):
            raise RuntimeError(f"stage path differs from embed_waveform: {vec} vs {ref_vec}")
        del decoded

        # ---- warm-up: one ingest of a few clips, one bare pass ----
        with stopwatch() as t_warm:
            run_full(clips[: min(2, len(clips))], s0, model, sync)
            run_bare(patches[:1], backbone, bs, sync)

        # ---- timed repeats, (a) and (b) interleaved so drifting load hits both ----
        full_runs: list[FullRun] = []
        bare_runs: list[Timed] = []
        for r in range(args.repeats):
            home = scratch / f"home-{r}"
            full_runs.append(
                run_full(clips, settings_for(home, checkpoint, device, base), model, sync)
            )
            bare_runs.append(run_bare(patches, backbone, bs, sync))
            print(
                f"repeat {r + 1}/{args.repeats}: full {full_runs[-1].ingest.wall_s:.2f} s, "
                f"bare {bare_runs[-1].wall_s:.2f} s, load {loadavg()}",
                file=sys.stderr,
            )

        # ---- stage breakdown (once, on a fresh home) ----
        stages_s = run_stages(
            clips, settings_for(scratch / "home-stages", checkpoint, device, base),
            model, backbone, bs, sync,
        )  # fmt: skip

    n = len(clips)
    full_med = median_of([f.ingest for f in full_runs])
    bare_med = median_of(bare_runs)
    intervals = [x for f in full_runs for x in f.completion_intervals_s]

    def rates(t: Timed) -> dict[str, Any]:
        return {
            "clips_per_s": n / t.wall_s,
            "rtf": audio_s / t.wall_s,
            "ms_per_clip": 1000.0 * t.wall_s / n,
            "cpu_util": round(t.cpu_util, 2),
        }

    stage_sum = sum(stages_s.values())
    results: dict[str, Any] = {
        **run_record(NAME, device, load),
        "config": {
            "clips": n,
            "repeats": args.repeats,
            "audio_seconds": audio_s,
            "patches": n_patches,
            "patch_batch_size": bs,
            "clip_files": [f"{c.parent.name}/{c.name}" for c in clips],
            "quick": args.quick,
        },
        "model": model_record,
        "loads_s": {
            "emotion_heads": round(t_heads[0].wall_s, 3),
            "audio_backbone": round(t_bb[0].wall_s, 3),
            "warmup": round(t_warm[0].wall_s, 3),
        },
        "full_pipeline": {
            **rates(full_med),
            "wall_s": summarise([f.ingest.wall_s for f in full_runs]),
            "store_open_s": summarise([f.store_open_s for f in full_runs]),
            "completion_interval_ms": {
                "p50": 1000.0 * float(np.percentile(intervals, 50)),
                "p90": 1000.0 * float(np.percentile(intervals, 90)),
                "max": 1000.0 * float(np.max(intervals)),
            },
        },
        "bare_backbone": {**rates(bare_med), "wall_s": summarise([b.wall_s for b in bare_runs])},
        "ratio": round(bare_med.wall_s / full_med.wall_s, 4),
        "target_ratio": TARGET_RATIO,
        "stages": {
            "per_stage": {
                k: {"total_s": v, "ms_per_clip": 1000.0 * v / n, "share": v / stage_sum}
                for k, v in stages_s.items()
            },
            "sum_s": stage_sum,
            "sum_ms_per_clip": 1000.0 * stage_sum / n,
            "sequential_latency_note": "sum of stages = one clip's latency when run alone, "
            "sequentially; (a) overlaps decoding (thread pool) with the backbone",
            "full_pipeline_wall_over_stage_sum": full_med.wall_s / stage_sum,
        },
    }
    path = write_results(NAME, results, results_dir(args))
    print_report(results)
    print(f"wrote {path} and SUMMARY.md", file=sys.stderr)
    return results


def print_report(r: dict[str, Any]) -> None:
    full, bare = r["full_pipeline"], r["bare_backbone"]
    print(f"clips: {r['config']['clips']} ({r['config']['audio_seconds']:.1f} s audio)")
    for label, x in (("(a) full ingest", full), ("(b) bare backbone", bare)):
        print(
            f"{label:>18}: {x['clips_per_s']:.3f} clips/s, RTF {x['rtf']:.1f}x, "
            f"{x['ms_per_clip']:.0f} ms/clip, cpu util {x['cpu_util']}"
        )
    print(f"ratio (a)/(b): {r['ratio']:.3f} (target >= {r['target_ratio']})")
    for k, s in r["stages"]["per_stage"].items():
        print(f"  {k:>16}: {s['ms_per_clip']:8.1f} ms/clip  {100 * s['share']:5.1f} %")
    print(f"load: {r['load']}")


def summary_section(r: dict[str, Any]) -> list[str]:
    full, bare = r["full_pipeline"], r["bare_backbone"]
    lines = [
        "## Ingest: `Engine.ingest` vs bare backbone forward",
        "",
        f"{r['config']['clips']} real 4Q clips ({fmt(r['config']['audio_seconds'], 1)} s of "
        f"audio), median of {r['config']['repeats']} repeats; emotion model: "
        f"{r['model']['kind']} (`{r['model']['identity']}`)." + quick_note(r["config"]),
        "",
        "| path | clips/s | real-time factor | ms per clip |",
        "|---|---:|---:|---:|",
        f"| (a) full ingest (decode, resample, mel, backbone, head, store) | "
        f"{fmt(full['clips_per_s'])} | {fmt(full['rtf'], 1)}× | "
        f"{fmt(full['ms_per_clip'], 0)} |",
        f"| (b) bare `forward_patches` on precomputed mel patches | "
        f"{fmt(bare['clips_per_s'])} | {fmt(bare['rtf'], 1)}× | "
        f"{fmt(bare['ms_per_clip'], 0)} |",
        "",
        verdict(r) + ".",
        "",
        "Stage breakdown of (a), each stage timed on its own over the same clips:",
        "",
        "| stage | ms per clip | share |",
        "|---|---:|---:|",
    ]
    stages = r["stages"]
    for name, s in stages["per_stage"].items():
        lines.append(f"| {name} | {fmt(s['ms_per_clip'], 1)} | {fmt(100 * s['share'], 1)} % |")
    lines += [
        f"| **sum of stages** | **{fmt(stages['sum_ms_per_clip'], 1)}** | 100 % |",
        "",
        f"Model loads and warm-up (excluded above): {loads(r)}.",
        *footer(r),
    ]
    return lines


if __name__ == "__main__":
    main()
