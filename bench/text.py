"""Text throughput: the text paths of storycue beside the bare encoder forward.

For each runtime of the encoder (``--backends``: ``torch`` eager PyTorch, ``onnx`` ONNX
Runtime, see ``storycue.models.text_onnx``) and each input:

(a) ``EmotionModel.embed_text`` on a list of story segments: the token-limit check,
    tokenisation, length-sorted batching, the encoder forward, mean pooling, L2
    normalisation and the text head; (b) the bare forward of the same runtime on the same
    segments, tokenised beforehand into the very batches (a) builds (same order, batch size
    and padding). The ratio (a)/(b) of segments per second is the share of the encoder's
    speed the text path keeps.
(c) the text worker's path: ``--clients`` threads call ``embed_text`` at once, ``--request-size``
    segments each, through the worker's micro-batcher (``storycue.models.batching``, as
    ``install_batching`` sets it up in a worker process); (d) the bare forward on exactly the
    batches the batcher formed in (c). The ratio (c)/(d) is the worker's share. This is the
    in-process batching path of the worker; the Celery queue in front of it is measured by
    ``bench/bulk.py --execution celery``.

Inputs: ``isear`` — the first N ISEAR test texts as segments (short, about 30 tokens each);
``story`` — one long story made of N ISEAR texts, a few per paragraph, cut by
``segment_story`` as ``Engine.match`` does (segments of up to a couple of hundred tokens);
``synthetic`` — N generated sentences (no dataset needed; ``--quick`` uses it when ISEAR
is absent).

Run from the repository root: ``python bench/text.py`` (``--help`` for options);
``--quick`` for a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import _harness as harness
from _report import fmt, footer, loads, quick_note
from storycue.config import Settings
from storycue.data.isear import load_isear
from storycue.errors import DatasetNotFoundError
from storycue.log import configure_logging
from storycue.models.batching import BatchedTextEncoder
from storycue.models.emotion import EmotionModel, load_emotion_model
from storycue.models.text import TextBackend, TextEncoder
from storycue.pipeline.segment import segment_story

NAME = "text"
TARGET_RATIO = 0.9
WORKLOADS = ("isear", "story", "synthetic")
BACKENDS: tuple[TextBackend, ...] = ("torch", "onnx")
_SUBJECTS = ("The old sailor", "My sister", "A stranger", "The whole village", "Nobody", "We")
_VERBS = ("waited for", "laughed about", "feared", "mourned", "celebrated", "remembered")
_OBJECTS = (
    "the storm that took the boats",
    "a letter that never came",
    "the first warm day of spring",
    "the wedding in the square",
    "the silence after the argument",
    "the long road home through the hills at night",
)


# ---- inputs ---------------------------------------------------------------------------------
def story_from(texts: list[str], per_paragraph: int) -> str:
    """One long story: ``per_paragraph`` texts joined into each paragraph."""
    paragraphs = [
        " ".join(texts[i : i + per_paragraph]) for i in range(0, len(texts), per_paragraph)
    ]
    return "\n\n".join(paragraphs)


def synthetic_texts(n: int) -> list[str]:
    """``n`` deterministic sentences of mixed length (no dataset needed)."""
    out = []
    for i in range(n):
        words = [
            _SUBJECTS[i % len(_SUBJECTS)],
            _VERBS[(i // 6) % len(_VERBS)],
            _OBJECTS[(i // 36) % len(_OBJECTS)],
        ]
        extra = ", and then " + _OBJECTS[(i * 7) % len(_OBJECTS)] if i % 3 == 0 else ""
        out.append(" ".join(words) + extra + ".")
    return out


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
def run_full(model: EmotionModel, segments: list[str], sync: Any) -> harness.Timed:
    with harness.stopwatch(sync) as t:
        out = model.embed_text(segments)
    if out.shape[0] != len(segments) or not np.isfinite(out).all():
        raise RuntimeError(f"embed_text returned {out.shape} / non-finite values")
    return t[0]


def run_bare(encoder: TextEncoder, batches: Batches, sync: Any) -> harness.Timed:
    net = encoder.model().model
    with torch.inference_mode(), harness.stopwatch(sync) as t:
        for enc in batches.encodings:
            net(**enc)
    return t[0]


class RecordingEncoder:
    """Passes ``encode`` through to an encoder and records each call's texts (the batches
    the micro-batcher formed)."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def encode(self, texts: list[str], *, allow_truncation: bool = False) -> np.ndarray:
        with self._lock:
            self.calls.append(list(texts))
        return self.encoder.encode(texts, allow_truncation=allow_truncation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)


def run_batched(
    model: EmotionModel,
    batched: BatchedTextEncoder,
    segments: list[str],
    clients: int,
    request_size: int,
    sync: Any,
) -> harness.Timed:
    """``clients`` threads calling ``embed_text`` with ``request_size`` segments at a time,
    through the worker's micro-batcher; the wall time until every request is answered."""
    requests = [segments[i : i + request_size] for i in range(0, len(segments), request_size)]
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            for req in requests[k::clients]:
                out = model.embed_text(req)
                if out.shape[0] != len(req) or not np.isfinite(out).all():
                    raise RuntimeError(f"embed_text returned {out.shape} / non-finite values")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    with harness.stopwatch(sync) as t:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    if errors:
        raise errors[0]
    return t[0]


def pretokenise_calls(encoder: TextEncoder, calls: list[list[str]]) -> Batches:
    """The batches ``encode`` builds for each recorded call (each call sorted and cut)."""
    encs: list[dict[str, torch.Tensor]] = []
    real = padded = 0
    for call in calls:
        b = pretokenise(encoder, call)
        encs += b.encodings
        real += b.real_tokens
        padded += b.padded_tokens
    return Batches(encs, real, padded)


def breakdown(
    model: EmotionModel, encoder: TextEncoder, segments: list[str], sync: Any
) -> dict[str, float]:
    """Milliseconds of each part of (a), each timed on its own."""
    loaded = encoder.model()
    with harness.stopwatch() as t_count:
        encoder.count_tokens(segments)
    with harness.stopwatch() as t_tok:
        batches = pretokenise(encoder, segments)
    pooled: list[torch.Tensor] = []
    hidden_states: list[torch.Tensor] = []
    with torch.inference_mode():
        with harness.stopwatch(sync) as t_fwd:
            for enc in batches.encodings:
                hidden_states.append(loaded.model(**enc).last_hidden_state)
        with harness.stopwatch(sync) as t_pool:
            for enc, hidden in zip(batches.encodings, hidden_states, strict=True):
                p = encoder._pool(hidden, enc["attention_mask"])
                pooled.append(torch.nn.functional.normalize(p, dim=-1).float().cpu())
    feats = torch.cat(pooled).numpy()
    with harness.stopwatch(sync) as t_head:
        model.project_text_features(feats)
    return {
        "count_tokens (limit check)": 1000.0 * t_count[0].wall_s,
        "tokenise": 1000.0 * t_tok[0].wall_s,
        "encoder forward": 1000.0 * t_fwd[0].wall_s,
        "pool+normalise": 1000.0 * t_pool[0].wall_s,
        "head": 1000.0 * t_head[0].wall_s,
    }


def bench_workload(
    model: EmotionModel,
    encoder: TextEncoder,
    segments: list[str],
    repeats: int,
    sync: Any,
    *,
    clients: int,
    request_size: int,
    max_wait_ms: float,
) -> dict[str, Any]:
    batches = pretokenise(encoder, segments)  # outside any timing
    model.use_text_encoder(encoder)
    run_full(model, segments[: encoder.batch_size], sync)  # warm-up at this shape class
    run_bare(encoder, Batches(batches.encodings[:1], 0, 0), sync)
    recorder = RecordingEncoder(encoder)
    batched = BatchedTextEncoder(recorder, max_batch=encoder.batch_size, max_wait_ms=max_wait_ms)
    fulls: list[harness.Timed] = []
    bares: list[harness.Timed] = []
    workers: list[harness.Timed] = []
    worker_bares: list[harness.Timed] = []
    worker_batches: list[Batches] = []
    try:
        for r in range(repeats):  # interleaved, so drifting load hits every path alike
            model.use_text_encoder(encoder)
            fulls.append(run_full(model, segments, sync))
            bares.append(run_bare(encoder, batches, sync))
            recorder.calls.clear()
            model.use_text_encoder(batched)
            workers.append(run_batched(model, batched, segments, clients, request_size, sync))
            formed = pretokenise_calls(encoder, recorder.calls)
            worker_batches.append(formed)
            worker_bares.append(run_bare(encoder, formed, sync))
            print(
                f"  repeat {r + 1}/{repeats}: embed_text {fulls[-1].wall_s:.2f} s, "
                f"bare {bares[-1].wall_s:.2f} s, worker {workers[-1].wall_s:.2f} s, "
                f"bare on its batches {worker_bares[-1].wall_s:.2f} s, load {harness.loadavg()}",
                file=sys.stderr,
            )
    finally:
        model.use_text_encoder(encoder)
        batched.close()
    full, bare = harness.median_of(fulls), harness.median_of(bares)
    worker, worker_bare = harness.median_of(workers), harness.median_of(worker_bares)
    formed = worker_batches[worker_bares.index(worker_bare)]
    n = len(segments)

    def rates(t: harness.Timed, b: Batches) -> dict[str, Any]:
        return {
            "segments_per_s": n / t.wall_s,
            "tokens_per_s": b.real_tokens / t.wall_s,
            "padded_tokens_per_s": b.padded_tokens / t.wall_s,
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
        "embed_text": {
            **rates(full, batches),
            "wall_s": harness.summarise([t.wall_s for t in fulls]),
        },
        "bare_encoder": {
            **rates(bare, batches),
            "wall_s": harness.summarise([t.wall_s for t in bares]),
        },
        "ratio": round(bare.wall_s / full.wall_s, 4),
        "worker_batching": {
            **rates(worker, formed),
            "wall_s": harness.summarise([t.wall_s for t in workers]),
            "clients": clients,
            "request_size": request_size,
            "max_wait_ms": max_wait_ms,
            "batches_formed": len(formed.encodings),
            "mean_batch_size": n / max(1, len(formed.encodings)),
        },
        "bare_on_worker_batches": {
            **rates(worker_bare, formed),
            "wall_s": harness.summarise([t.wall_s for t in worker_bares]),
        },
        "worker_ratio": round(worker_bare.wall_s / worker.wall_s, 4),
        "breakdown_ms": breakdown(model, encoder, segments, sync),
    }


# ---- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--texts", type=int, default=512, help="texts per input (default 512)")
    p.add_argument(
        "--inputs",
        default="isear,story",
        help=f"comma-separated inputs among {','.join(WORKLOADS)} (default isear,story)",
    )
    p.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated text runtimes among torch,onnx (default both)",
    )
    p.add_argument(
        "--per-paragraph", type=int, default=6, help="ISEAR texts per story paragraph (6)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed repeats, median kept (3)")
    p.add_argument("--batch-size", type=int, default=None, help="default Settings.batch.text")
    p.add_argument(
        "--clients", type=int, default=4, help="concurrent requests in the worker path (4)"
    )
    p.add_argument("--request-size", type=int, default=8, help="segments per worker request (8)")
    harness.add_model_arguments(p, threads="torch/onnxruntime intra-op threads")
    harness.add_run_arguments(
        p,
        quick="smoke run: 48 texts, 1 repeat, no waiting (isear and story, or synthetic "
        "when ISEAR is absent)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.texts, args.repeats, args.max_wait = min(args.texts, 48), 1, 0.0
    return args


def load_texts(base: Settings, n: int, *, quick: bool, inputs: list[str]) -> list[str] | None:
    """The first ``n`` ISEAR test texts (``None`` when not needed, or absent in quick mode)."""
    if not {"isear", "story"} & set(inputs):
        return None
    try:
        records = load_isear("test", settings=base)
    except DatasetNotFoundError:
        if quick:
            return None
        raise
    if len(records) < n:
        raise SystemExit(f"--texts {n}: the ISEAR test part has {len(records)}")
    return [r.text for r in records[:n]]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    inputs = [w.strip() for w in args.inputs.split(",") if w.strip()]
    unknown = sorted(set(inputs) - set(WORKLOADS))
    if unknown or not inputs:
        raise SystemExit(f"--inputs: unknown {unknown}; choose among {', '.join(WORKLOADS)}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - set(BACKENDS):
        raise SystemExit(f"--backends: choose among {', '.join(BACKENDS)}")
    if args.texts < 1 or args.repeats < 1 or args.clients < 1 or args.request_size < 1:
        raise SystemExit("--texts, --repeats, --clients and --request-size must be at least 1")
    configure_logging(args.log_level)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = Settings()
    device = Settings(device=args.device).torch_device()
    sync = harness.device_sync(device)
    batch_size = args.batch_size or base.batch.text
    texts = load_texts(base, args.texts, quick=args.quick, inputs=inputs)
    if texts is None and {"isear", "story"} & set(inputs):
        print("ISEAR not found: --quick runs on synthetic sentences", file=sys.stderr)
        inputs = ["synthetic"]
    load = harness.wait_for_quiet(args.max_load, args.max_wait)

    with harness.scratch_dir() as tmp:
        checkpoint, model_record = harness.resolve_emotion_checkpoint(args.model, Path(tmp))
        print(f"model: {model_record['kind']} ({model_record['identity']})", file=sys.stderr)
        with harness.stopwatch() as t_heads:
            model = load_emotion_model(
                checkpoint,
                device=device,
                text_batch_size=batch_size,
                text_max_tokens=base.text_max_tokens,
            )
        loads: dict[str, float] = {"emotion_heads": round(t_heads[0].wall_s, 3)}
        encoders: dict[str, TextEncoder] = {}
        for backend in backends:
            enc = TextEncoder(
                model.info.text_encoder,
                device=device,
                batch_size=batch_size,
                max_tokens=base.text_max_tokens,
                pooling=model.info.text_pooling,
                backend=backend,
            )
            with harness.stopwatch() as t_enc:
                enc.model()  # the onnx backend exports on first use (cached afterwards)
            loads[f"text_encoder_{backend}"] = round(t_enc[0].wall_s, 3)
            encoders[backend] = enc

        workloads: dict[str, Any] = {}
        for name in inputs:
            segmentation: dict[str, Any] | None = None
            first = next(iter(encoders.values()))
            if name == "isear":
                assert texts is not None
                segments = texts
            elif name == "synthetic":
                segments = synthetic_texts(args.texts)
            else:
                assert texts is not None
                story = story_from(texts, args.per_paragraph)
                with harness.stopwatch() as t_seg:
                    segs = segment_story(story, first.count_tokens, first.max_tokens)
                segments = [s.text for s in segs]
                segmentation = {
                    "story_chars": len(story),
                    "segment_story_ms": 1000.0 * t_seg[0].wall_s,
                }
            for backend, enc in encoders.items():
                key = f"{backend}/{name}"
                print(f"{key}: {len(segments)} segments", file=sys.stderr)
                workloads[key] = {
                    "backend": backend,
                    "input": name,
                    **bench_workload(
                        model,
                        enc,
                        segments,
                        args.repeats,
                        sync,
                        clients=args.clients,
                        request_size=args.request_size,
                        max_wait_ms=float(base.batch.max_wait_ms),
                    ),
                }
                if segmentation is not None:
                    workloads[key]["segmentation"] = segmentation
        cross: dict[str, Any] = {}
        if "torch" in encoders and "onnx" in encoders:
            for name in inputs:
                t, o = workloads.get(f"torch/{name}"), workloads.get(f"onnx/{name}")
                if t and o:
                    cross[name] = {
                        "bare_onnx_over_bare_torch": round(
                            o["bare_encoder"]["segments_per_s"]
                            / t["bare_encoder"]["segments_per_s"],
                            4,
                        ),
                        "embed_text_onnx_over_bare_torch": round(
                            o["embed_text"]["segments_per_s"] / t["bare_encoder"]["segments_per_s"],
                            4,
                        ),
                    }

    results: dict[str, Any] = {
        **harness.run_record(NAME, device, load),
        "config": {
            "texts": args.texts,
            "inputs": inputs,
            "backends": backends,
            "per_paragraph": args.per_paragraph,
            "repeats": args.repeats,
            "batch_size": batch_size,
            "max_tokens": first.max_tokens,
            "text_encoder": first.name,
            "clients": args.clients,
            "request_size": args.request_size,
            "quick": args.quick,
            "onnx_threads": {
                b: getattr(e.model().model, "threads", None) for b, e in encoders.items()
            },
        },
        "model": model_record,
        "loads_s": loads,
        "workloads": workloads,
        "onnx_vs_torch": cross,
        "target_ratio": TARGET_RATIO,
    }
    path = harness.write_results(NAME, results, harness.results_dir(args))
    print_report(results)
    print(f"wrote {path} and SUMMARY.md", file=sys.stderr)
    return results


def print_report(r: dict[str, Any]) -> None:
    for name, w in r["workloads"].items():
        a, b = w["embed_text"], w["bare_encoder"]
        c, d = w["worker_batching"], w["bare_on_worker_batches"]
        print(f"{name}: {w['segments']} segments, {w['mean_tokens']:.1f} tokens on average")
        for label, x in [
            ("(a) embed_text       ", a),
            ("(b) bare model       ", b),
            ("(c) worker batching  ", c),
            ("(d) bare, c's batches", d),
        ]:
            print(
                f"  {label}: {x['segments_per_s']:8.1f} seg/s {x['tokens_per_s']:9.0f} tok/s"
                f"  cpu util {x['cpu_util']}"
            )
        print(f"  ratio (a)/(b)  : {w['ratio']:.3f} (target >= {r['target_ratio']})")
        print(f"  ratio (c)/(d)  : {w['worker_ratio']:.3f} (target >= {r['target_ratio']})")
        for k, v in w["breakdown_ms"].items():
            print(f"    {k:>28}: {v:9.1f} ms")
    for name, x in r["onnx_vs_torch"].items():
        print(f"{name}: onnx bare / torch bare {x['bare_onnx_over_bare_torch']:.2f}")
    print(f"load: {r['load']}")


def summary_section(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    quick = quick_note(cfg)
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
            f"| {name} | {w['segments']} | {fmt(w['mean_tokens'], 1)} | "
            f"{fmt(a['segments_per_s'], 1)} | {fmt(b['segments_per_s'], 1)} | "
            f"**{fmt(w['ratio'], 3)}** | "
            f"{fmt(c['segments_per_s'] if c else None, 1)} | "
            f"{fmt(d['segments_per_s'] if d else None, 1)} | "
            f"**{fmt(w.get('worker_ratio'), 3)}** |"
        )
    cross = r.get("onnx_vs_torch") or {}
    if cross:
        lines += [
            "",
            "ONNX Runtime against eager PyTorch on the same segments: "
            + "; ".join(
                f"{name}: bare forward ×{fmt(x['bare_onnx_over_bare_torch'])}, "
                f"embed_text (onnx) over bare torch ×{fmt(x['embed_text_onnx_over_bare_torch'])}"
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
            f"| {name} | " + " | ".join(fmt(v, 1) for v in w["breakdown_ms"].values()) + " |"
        )
    lines += ["", f"Model loads (excluded above): {loads(r)}.", *footer(r)]
    return lines


if __name__ == "__main__":
    main()
