"""Run by test_concurrent_loading.py in a fresh interpreter: every kind of model load of
storycue started by many threads at the same instant, in a process that has loaded
nothing yet (what a gateway does when its first searches, a bulk job and a training job
arrive together). Prints one JSON line: the errors, and how many distinct results each
kind of call gave (1 = every thread got the same vectors)."""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np


def main() -> None:
    from storycue.config import get_settings
    from storycue.models.checkpoints import checkpoint_info, resolve_checkpoint
    from storycue.models.emotion import load_emotion_model
    from storycue.models.musicnn import load_backbone
    from storycue.models.text import TextEncoder

    settings = get_settings()
    info = checkpoint_info(resolve_checkpoint(settings.emotion_model))
    texts = ["It grew louder, louder, louder!", "The snow fell softly on the empty street."]
    wave = np.sin(np.linspace(0, 2000 * np.pi, 16000 * 4)).astype(np.float32) * 0.1

    def private_encoder() -> Any:  # a training job's own copy of the search path's encoder
        return TextEncoder(info.text_encoder, backend="torch").encode(texts)

    def onnx_encoder() -> Any:
        return TextEncoder(info.text_encoder, backend="onnx").encode(texts)

    def base_encoder() -> Any:  # the ridge probe's frozen base model
        return TextEncoder("sentence-transformers/all-MiniLM-L6-v2", backend="torch").encode(texts)

    def search_path() -> Any:
        return load_emotion_model(settings.emotion_model).embed_text(texts)

    def backbone() -> Any:
        return load_backbone(info.audio_backbone, cached=False).embed_waveform(wave)["penultimate"]

    calls: list[tuple[str, Callable[[], Any]]] = [
        *[("private_encoder", private_encoder)] * 4,
        *[("onnx_encoder", onnx_encoder)] * 2,
        *[("base_encoder", base_encoder)] * 2,
        *[("search_path", search_path)] * 3,
        *[("backbone", backbone)] * 2,
    ]
    barrier = threading.Barrier(len(calls))
    errors: list[str] = []
    results: dict[str, list[np.ndarray]] = {}
    lock = threading.Lock()

    def run(kind: str, fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            out = np.asarray(fn(), np.float32)
            with lock:
                results.setdefault(kind, []).append(out)
        except Exception:  # every failure is reported, whatever its type
            with lock:
                errors.append(f"{kind}: {traceback.format_exc(limit=3)}")

    threads = [threading.Thread(target=run, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    distinct = {
        kind: len({np.round(r, 4).tobytes() for r in rs}) for kind, rs in sorted(results.items())
    }
    counts = {kind: len(rs) for kind, rs in sorted(results.items())}
    sys.stdout.write(json.dumps({"errors": errors, "distinct": distinct, "counts": counts}) + "\n")


if __name__ == "__main__":
    main()
