"""Text throughput: ``EmotionModel.embed_text`` beside the bare encoder forward.

(a) ``EmotionModel.embed_text`` on a list of story segments: the token-limit check,
    tokenisation, length-sorted batching, the MiniLM forward, mean pooling, L2 normalisation
    and the text head; (b) the bare ``AutoModel`` forward on the same segments, tokenised
    beforehand into the very batches (a) builds (same order, batch size and padding). The
    ratio (a)/(b) of segments per second is the share of the encoder's speed the text path
    keeps.

Two inputs by default: ``isear`` — the first N ISEAR test texts as segments (short, about
30 tokens each); ``story`` — one long story made of N ISEAR texts, a few per paragraph, cut
by ``segment_story`` as ``Engine.match`` does (segments of up to a couple of hundred tokens).

Run from the repository root: ``python bench/text.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import (
    DEFAULT_MAX_LOAD,
    RESULTS_DIR,
    Timed,
    device_sync,
    environment,
    loadavg,
    median_of,
    resolve_emotion_checkpoint,
    scratch_dir,
    stopwatch,
    summarise,
    wait_for_quiet,
    write_results,
)
from storycue.config import Settings
from storycue.data.isear import load_isear
from storycue.log import configure_logging
from storycue.models.emotion import EmotionModel, load_emotion_model
from storycue.models.text import TextEncoder
from storycue.pipeline.segment import segment_story

NAME = "text"
TARGET_RATIO = 0.9
WORKLOADS = ("isear", "story")


# ---- inputs ---------------------------------------------------------------------------------
def story_from(texts: list[str], per_paragraph: int) -> str:
    """One long story: ``per_paragraph`` texts joined into each paragraph."""
    paragraphs = [
        " ".join(texts[i : i + per_paragraph]) for i in range(0, len(texts), per_paragraph)
    ]
    return "\n\n".join(paragraphs)


@dataclass
class Batches:
    """The batches ``TextEncoder.encode`` builds for some segments, tokenised up front."""

    encodings: list[dict[str, torch.Tensor]]
    real_tokens: int  # attention-mask ones: tokens that are not padding
    padded_tokens: int  # every position the encoder computes


def pretokenise(encoder: TextEncoder, segments: list[str]) -> Batches:
    """Tokenise exactly as ``TextEncoder.encode`` does: sort by character length (stable),
    cut into ``batch_size`` batches, pad each to its longest, truncate at ``max_tokens``."""
    loaded = encoder.model()
    order = np.argsort([len(t) for t in segments], kind="stable")
    encs: list[dict[str, torch.Tensor]] = []
    real = padded = 0
    for start in range(0, len(segments), encoder.batch_size):
        batch = [segments[int(i)] for i in order[start : start + encoder.batch_size]]
        enc = loaded.tokenizer(
            batch, padding=True, truncation=True, max_length=encoder.max_tokens, return_tensors="pt"
        ).to(loaded.device)
        encs.append(dict(enc))
        real += int(enc["attention_mask"].sum())
        padded += int(enc["attention_mask"].numel())
    return Batches(encs, real, padded)


# ---- the two timed paths --------------------------------------------------------------------
def run_full(model: EmotionModel, segments: list[str], sync: Any) -> Timed:
    with stopwatch(sync) as t:
        out = model.embed_text(segments)
    if out.shape[0] != len(segments) or not np.isfinite(out).all():
        raise RuntimeError(f"embed_text returned {out.shape} / non-finite values")
    return t[0]


def run_bare(encoder: TextEncoder, batches: Batches, sync: Any) -> Timed:
    net = encoder.model().model
    with torch.inference_mode(), stopwatch(sync) as t:
        for enc in batches.encodings:
            net(**enc)
    return t[0]


def breakdown(
    model: EmotionModel, encoder: TextEncoder, segments: list[str], sync: Any
) -> dict[str, float]:
    """Milliseconds of each part of (a), each timed on its own."""
    loaded = encoder.model()
    with stopwatch() as t_count:
        encoder.count_tokens(segments)
    with stopwatch() as t_tok:
        batches = pretokenise(encoder, segments)
    pooled: list[torch.Tensor] = []
    hidden_states: list[torch.Tensor] = []
    with torch.inference_mode():
        with stopwatch(sync) as t_fwd:
            for enc in batches.encodings:
                hidden_states.append(loaded.model(**enc).last_hidden_state)
        with stopwatch(sync) as t_pool:
            for enc, hidden in zip(batches.encodings, hidden_states, strict=True):
                p = encoder._pool(hidden, enc["attention_mask"])
                pooled.append(torch.nn.functional.normalize(p, dim=-1).float().cpu())
    feats = torch.cat(pooled).numpy()
    with stopwatch(sync) as t_head:
        model.project_text_features(feats)
    return {
        "count_tokens (limit check)": 1000.0 * t_count[0].wall_s,
        "tokenise": 1000.0 * t_tok[0].wall_s,
        "encoder forward": 1000.0 * t_fwd[0].wall_s,
        "pool+normalise": 1000.0 * t_pool[0].wall_s,
        "head": 1000.0 * t_head[0].wall_s,
    }


def bench_workload(
    model: EmotionModel, encoder: TextEncoder, segments: list[str], repeats: int, sync: Any
) -> dict[str, Any]:
    batches = pretokenise(encoder, segments)  # outside any timing
    run_full(model, segments[: encoder.batch_size], sync)  # warm-up at this shape class
    run_bare(encoder, Batches(batches.encodings[:1], 0, 0), sync)
    fulls: list[Timed] = []
    bares: list[Timed] = []
    for r in range(repeats):  # interleaved, so drifting load hits both
        fulls.append(run_full(model, segments, sync))
        bares.append(run_bare(encoder, batches, sync))
        print(
            f"  repeat {r + 1}/{repeats}: embed_text {fulls[-1].wall_s:.2f} s, "
            f"bare {bares[-1].wall_s:.2f} s, load {loadavg()}",
            file=sys.stderr,
        )
    full, bare = median_of(fulls), median_of(bares)
    n = len(segments)

    def rates(t: Timed) -> dict[str, Any]:
        return {
            "segments_per_s": n / t.wall_s,
            "tokens_per_s": batches.real_tokens / t.wall_s,
            "padded_tokens_per_s": batches.padded_tokens / t.wall_s,
            "ms_per_segment": 1000.0 * t.wall_s / n,
            "cpu_util": round(t.cpu_util, 2),
        }

    return {
        "segments": n,
        "batches": len(batches.encodings),
        "tokens": batches.real_tokens,
        "padded_tokens": batches.padded_tokens,
        "mean_tokens": batches.real_tokens / n,
        "max_tokens": max(int(e["attention_mask"].sum(1).max()) for e in batches.encodings),
        "embed_text": {**rates(full), "wall_s": summarise([t.wall_s for t in fulls])},
        "bare_encoder": {**rates(bare), "wall_s": summarise([t.wall_s for t in bares])},
        "ratio": round(bare.wall_s / full.wall_s, 4),
        "breakdown_ms": breakdown(model, encoder, segments, sync),
    }


# ---- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--texts", type=int, default=512, help="ISEAR test texts used (default 512)")
    p.add_argument(
        "--inputs",
        default=",".join(WORKLOADS),
        help="comma-separated inputs among isear,story (default both)",
    )
    p.add_argument(
        "--per-paragraph", type=int, default=6, help="ISEAR texts per story paragraph (6)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repeats, median kept (3)")
    p.add_argument("--batch-size", type=int, default=None, help="default Settings.batch.text")
    p.add_argument(
        "--model",
        default=None,
        help="emotion model name or .safetensors path "
        "(default: shipped va-regression, else random heads)",
    )
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda:0' (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument(
        "--max-load",
        type=float,
        default=DEFAULT_MAX_LOAD,
        help="wait while the 1-min load average is above this (1.5)",
    )
    p.add_argument(
        "--max-wait", type=float, default=180.0, help="longest wait for a quiet machine, s (180)"
    )
    p.add_argument("--results-dir", type=Path, default=None, help="default bench/results")
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    inputs = [w.strip() for w in args.inputs.split(",") if w.strip()]
    unknown = sorted(set(inputs) - set(WORKLOADS))
    if unknown or not inputs:
        raise SystemExit(f"--inputs: unknown {unknown}; choose among {', '.join(WORKLOADS)}")
    if args.texts < 1 or args.repeats < 1:
        raise SystemExit("--texts and --repeats must be at least 1")
    configure_logging(args.log_level)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = Settings()
    device = Settings(device=args.device).torch_device()
    sync = device_sync(device)
    batch_size = args.batch_size or base.batch.text
    records = load_isear("test", settings=base)
    if len(records) < args.texts:
        raise SystemExit(f"--texts {args.texts}: the ISEAR test part has {len(records)}")
    texts = [r.text for r in records[: args.texts]]
    load = wait_for_quiet(args.max_load, args.max_wait)

    with scratch_dir() as tmp:
        checkpoint, model_record = resolve_emotion_checkpoint(args.model, Path(tmp))
        print(f"model: {model_record['kind']} ({model_record['identity']})", file=sys.stderr)
        with stopwatch() as t_heads:
            model = load_emotion_model(
                checkpoint,
                device=device,
                text_batch_size=batch_size,
                text_max_tokens=base.text_max_tokens,
            )
        encoder: TextEncoder = model.text_encoder
        with stopwatch() as t_enc:
            encoder.model()
        if encoder.batch_size != batch_size:
            raise SystemExit(
                f"model {checkpoint} is already loaded with batch size {encoder.batch_size}"
            )

        workloads: dict[str, Any] = {}
        for name in inputs:
            segmentation: dict[str, Any] | None = None
            if name == "isear":
                segments = texts
            else:
                story = story_from(texts, args.per_paragraph)
                with stopwatch() as t_seg:
                    segs = segment_story(story, encoder.count_tokens, encoder.max_tokens)
                segments = [s.text for s in segs]
                segmentation = {
                    "story_chars": len(story),
                    "segment_story_ms": 1000.0 * t_seg[0].wall_s,
                }
            print(f"{name}: {len(segments)} segments", file=sys.stderr)
            workloads[name] = bench_workload(model, encoder, segments, args.repeats, sync)
            if segmentation is not None:
                workloads[name]["segmentation"] = segmentation

    load["load_after"] = loadavg()
    results: dict[str, Any] = {
        "benchmark": NAME,
        "environment": environment(device),
        "load": load,
        "config": {
            "texts": args.texts,
            "inputs": inputs,
            "per_paragraph": args.per_paragraph,
            "repeats": args.repeats,
            "batch_size": batch_size,
            "max_tokens": encoder.max_tokens,
            "text_encoder": encoder.name,
        },
        "model": model_record,
        "loads_s": {
            "emotion_heads": round(t_heads[0].wall_s, 3),
            "text_encoder": round(t_enc[0].wall_s, 3),
        },
        "workloads": workloads,
        "target_ratio": TARGET_RATIO,
    }
    path = write_results(NAME, results, args.results_dir or RESULTS_DIR)
    print_report(results)
    print(f"wrote {path} and SUMMARY.md", file=sys.stderr)
    return results


def print_report(r: dict[str, Any]) -> None:
    for name, w in r["workloads"].items():
        a, b = w["embed_text"], w["bare_encoder"]
        print(f"{name}: {w['segments']} segments, {w['mean_tokens']:.1f} tokens on average")
        print(
            f"  (a) embed_text : {a['segments_per_s']:8.1f} seg/s  {a['tokens_per_s']:9.0f} tok/s"
            f"  cpu util {a['cpu_util']}"
        )
        print(
            f"  (b) bare model : {b['segments_per_s']:8.1f} seg/s  {b['tokens_per_s']:9.0f} tok/s"
            f"  cpu util {b['cpu_util']}"
        )
        print(f"  ratio (a)/(b)  : {w['ratio']:.3f} (target >= {r['target_ratio']})")
        for k, v in w["breakdown_ms"].items():
            print(f"    {k:>28}: {v:9.1f} ms")
    print(f"load: {r['load']}")


if __name__ == "__main__":
    main()
