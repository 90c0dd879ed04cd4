"""The micro-batcher: batches close on size or on the wait limit, results stay in order."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from storycue.errors import ConfigurationError
from storycue.models.batching import BatchedTextEncoder, MicroBatcher


def test_concurrent_requests_share_batches_up_to_max() -> None:
    seen: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        seen.append(list(items))
        return [i * 10 for i in items]

    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=4, max_wait_ms=200)
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(lambda i: b.submit(i).result(timeout=5), range(10)))
    finally:
        b.close()
    assert results == [i * 10 for i in range(10)]
    assert all(len(batch) <= 4 for batch in seen)
    assert sorted(i for batch in seen for i in batch) == list(range(10))
    assert len(seen) < 10  # requests really were gathered
    assert b.stats.items == 10 and b.stats.largest_batch_units <= 4


def test_streams_run_batches_at_once_and_close_drains_every_stream() -> None:
    """With two streams a second batch runs while the first is still in ``fn`` (the
    barrier only opens with two calls inside), and close() still answers every request."""
    inside = threading.Barrier(2, timeout=5)
    threads: set[str] = set()

    def fn(items: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        if items[0] < 2:  # the first two batches meet inside fn
            inside.wait()
        return [i + 100 for i in items]

    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=1, max_wait_ms=0, streams=2)
    futs = [b.submit(i) for i in range(8)]
    b.close()
    assert [f.result(timeout=5) for f in futs] == [i + 100 for i in range(8)]
    assert len(threads) == 2 and b.stats.items == 8 and b.stats.batches == 8
    with pytest.raises(ConfigurationError):
        MicroBatcher(fn, max_batch=1, max_wait_ms=0, streams=0)


def test_a_lone_request_waits_at_most_max_wait() -> None:
    b: MicroBatcher[int, int] = MicroBatcher(lambda xs: xs, max_batch=64, max_wait_ms=50)
    try:
        t0 = time.monotonic()
        assert b.submit(7).result(timeout=5) == 7
        elapsed = time.monotonic() - t0
    finally:
        b.close()
    assert 0.04 <= elapsed < 1.0
    assert b.stats.batches == 1 and b.stats.last_batch_units == 1


def test_weights_bound_a_batch_and_an_oversized_item_runs_alone() -> None:
    sizes: list[int] = []

    def fn(items: list[list[int]]) -> list[int]:
        sizes.append(sum(len(x) for x in items))
        return [len(x) for x in items]

    b: MicroBatcher[list[int], int] = MicroBatcher(fn, max_batch=5, max_wait_ms=100, weight=len)
    try:
        futs = [b.submit([0] * n) for n in (3, 3, 9, 2)]
        assert [f.result(timeout=5) for f in futs] == [3, 3, 9, 2]
    finally:
        b.close()
    assert all(s <= 5 or s == 9 for s in sizes)
    assert 9 in sizes


def test_an_error_reaches_every_request_of_its_batch() -> None:
    gate = threading.Event()

    def fn(items: list[int]) -> list[int]:
        gate.wait(5)
        raise RuntimeError("encoder exploded")

    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=8, max_wait_ms=100)
    futs = [b.submit(i) for i in range(3)]
    gate.set()
    for f in futs:
        with pytest.raises(RuntimeError, match="encoder exploded"):
            f.result(timeout=5)
    b.close()
    with pytest.raises(ConfigurationError):
        b.submit(1)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        MicroBatcher(lambda xs: xs, max_batch=0, max_wait_ms=1)


def test_batched_text_encoder_matches_the_plain_encoder(text_encoder: object) -> None:
    texts = ["The storm broke over the harbour.", "She laughed in the sun.", "Quiet grief."]
    plain = np.asarray(text_encoder.encode(texts))  # type: ignore[attr-defined]
    batched = BatchedTextEncoder(text_encoder, max_batch=2, max_wait_ms=20)
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            rows = list(pool.map(lambda t: batched.encode([t])[0], texts))
        assert batched.name == text_encoder.name  # type: ignore[attr-defined]
        assert batched.max_tokens == text_encoder.max_tokens  # type: ignore[attr-defined]
    finally:
        batched.close()
    np.testing.assert_allclose(np.stack(rows), plain, atol=1e-5)


def test_batched_audio_backbone_gives_the_backbone_features() -> None:
    from storycue.models.batching import BatchedAudioBackbone
    from storycue.models.musicnn import load_backbone

    bb = load_backbone("MTT_musicnn", device="cpu")
    rng = np.random.default_rng(0)
    t = np.arange(16_000 * 8) / 16_000
    waves = [
        (0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        for f in (220.0, 440.0)
    ]
    plain = [bb.embed_waveform(w) for w in waves]
    batched = BatchedAudioBackbone(bb, max_patches=3, max_wait_ms=50)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            got = list(pool.map(batched.embed_waveform, waves))
    finally:
        batched.close()
    for p, g in zip(plain, got, strict=True):
        assert set(p) == set(g)
        for k in p:
            np.testing.assert_allclose(g[k], p[k], rtol=1e-4, atol=1e-5)
    assert batched.batcher.stats.largest_batch_units <= 3


def test_a_backlog_joins_a_closed_batch_up_to_max_gather() -> None:
    release = threading.Event()
    seen: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        seen.append(list(items))
        release.wait(timeout=5)
        return [i + 1 for i in items]

    b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch=4, max_wait_ms=0, max_gather=8)
    try:
        first = b.submit(0)
        while not seen:  # the batcher is busy with [0]
            time.sleep(0.001)
        futures = [b.submit(i) for i in range(1, 11)]  # a backlog of 10
        release.set()
        assert first.result(timeout=5) == 1
        assert [f.result(timeout=5) for f in futures] == list(range(2, 12))
    finally:
        b.close()
    assert seen == [[0], list(range(1, 9)), [9, 10]]
    assert b.stats.largest_batch_units == 8
    with pytest.raises(ConfigurationError):
        MicroBatcher(lambda xs: xs, max_batch=4, max_wait_ms=1, max_gather=3)


def test_batched_text_encoder_sorts_mixed_lengths_and_matches_the_plain_encoder(
    text_encoder: object,
) -> None:
    words = [
        "the",
        "night",
        "was",
        "long",
        "and",
        "the",
        "river",
        "ran",
        "cold",
        "under",
        "a",
        "grey",
        "and",
        "silent",
        "sky",
    ]
    texts = [" ".join(words[: 1 + (i * 7) % len(words)]) * (1 + i % 5) for i in range(40)]
    plain = np.asarray(text_encoder.encode(texts))  # type: ignore[attr-defined]
    calls: list[list[str]] = []

    class Recording:
        def encode(self, batch: list[str], *, allow_truncation: bool = False) -> np.ndarray:
            calls.append(list(batch))
            return np.asarray(text_encoder.encode(batch))  # type: ignore[attr-defined]

    batched = BatchedTextEncoder(Recording(), max_batch=4, max_wait_ms=20, gather=4)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            rows = list(pool.map(lambda k: batched.encode(texts[k : k + 5]), range(0, 40, 5)))
    finally:
        batched.close()
    np.testing.assert_allclose(np.concatenate(rows), plain, atol=1e-5)
    assert sorted(t for c in calls for t in c) == sorted(texts)
    assert max(len(c) for c in calls) <= 16


def test_a_call_is_one_request_so_its_segments_share_one_flush() -> None:
    """A bulk task's chunk reaches the encoder whole (sorted there as one), even when it is
    larger than a flush may gather, while small concurrent calls still share flushes; each
    call gets back exactly its own rows, in its order."""
    release = threading.Event()
    calls: list[list[str]] = []

    class Recording:
        def encode(self, batch: list[str], *, allow_truncation: bool = False) -> np.ndarray:
            calls.append(list(batch))
            release.wait(timeout=5)
            return np.asarray([[float(t.split("-")[1])] for t in batch], np.float32)

    batched = BatchedTextEncoder(Recording(), max_batch=4, max_wait_ms=0, gather=2)
    try:
        # what encode() submits, queued from this thread so the order is known
        first = batched.batcher.submit(["a-0"])
        while not calls:  # the batcher is busy with the first call
            time.sleep(0.001)
        big = batched.batcher.submit([f"b-{i}" for i in range(20)])
        small = [batched.batcher.submit([f"c-{i}", f"c-{i + 1}"]) for i in (100, 200)]
        release.set()
        np.testing.assert_array_equal(first.result(timeout=5), [[0.0]])
        np.testing.assert_array_equal(big.result(timeout=5)[:, 0], np.arange(20.0))
        np.testing.assert_array_equal(small[0].result(timeout=5)[:, 0], [100.0, 101.0])
        np.testing.assert_array_equal(small[1].result(timeout=5)[:, 0], [200.0, 201.0])
        np.testing.assert_array_equal(batched.encode(["d-7", "d-3"])[:, 0], [7.0, 3.0])
    finally:
        batched.close()
    # the 20-segment call runs alone (more than 2 x 4 may gather); the two small ones share
    assert [len(c) for c in calls] == [1, 20, 4, 2]
    assert batched.batcher.stats.items == 5 and batched.batcher.stats.units == 27


def test_worker_warm_up_runs_both_encoders_through_their_batchers(
    tmp_path: Path, text_encoder: object
) -> None:
    """An audio+text worker loads the model, installs the micro-batchers and runs each
    encoder once before its first task (the first task must not pay for kernel set-up)."""
    from storycue.config import Settings
    from storycue.context import close_contexts, get_context
    from storycue.models.batching import BatchedAudioBackbone, BatchedTextEncoder
    from storycue.runtime.worker import warm_up

    settings = Settings(home=tmp_path / "home")
    # The model is the process-wide instance other tests use: put its own encoder and
    # backbone back afterwards (the batchers are closed at the end of this test).
    model = get_context(settings).load_model()
    model.use_text_encoder(text_encoder)
    try:
        warm_up(settings, ["text", "audio"])
        text_side, audio_side = model.text_encoder, model.audio_backbone()
        assert isinstance(text_side, BatchedTextEncoder)
        assert isinstance(audio_side, BatchedAudioBackbone)
        # the warm-up went through the batchers: one request each
        assert text_side.batcher.stats.items == 1
        assert audio_side.batcher.stats.items == 1
        text_side.close()
        audio_side.close()
    finally:
        model.use_audio_backbone(None)
        model.use_text_encoder(text_encoder)
        close_contexts()
    assert not isinstance(model.audio_backbone(), BatchedAudioBackbone)
    assert not isinstance(model.text_encoder, BatchedTextEncoder)


def test_a_context_that_shares_text_forwards_wraps_each_model_once_and_unwraps_on_close(
    tmp_path: Path, text_encoder: object
) -> None:
    """The gateway's context (``share_text_forwards``) puts one greedy batcher in front of
    each model's text encoder; closing the context gives the model its plain encoder back
    and stops the batcher."""
    from storycue.config import Settings
    from storycue.context import close_contexts, get_context

    settings = Settings(home=tmp_path / "home")
    context = get_context(settings)
    model = context.load_model()  # the process-wide instance: restored below
    model.use_text_encoder(text_encoder)
    try:
        assert context.load_model().text_encoder is text_encoder  # not shared until asked
        context.share_text_forwards()
        wrapped = context.load_model().text_encoder
        assert isinstance(wrapped, BatchedTextEncoder) and wrapped.inner is text_encoder
        assert wrapped.batcher.max_wait_s == 0.0
        assert context.load_model().text_encoder is wrapped  # one batcher per model
        np.testing.assert_allclose(
            wrapped.encode(["a calm grey sea"]),
            text_encoder.encode(["a calm grey sea"]),  # type: ignore[attr-defined]
            atol=1e-6,
        )
        close_contexts()
        assert model.text_encoder is text_encoder
        with pytest.raises(ConfigurationError, match="closed"):
            wrapped.encode(["after close"])
    finally:
        model.use_text_encoder(text_encoder)
        close_contexts()


def test_model_warm_up_reports_each_side(text_encoder: object) -> None:
    from storycue.config import get_settings
    from storycue.models.emotion import load_emotion_model, warm_up_waveform

    model = load_emotion_model(get_settings().emotion_model, device="cpu")
    model.use_text_encoder(text_encoder)
    took = model.warm_up(text=False, audio=True)
    assert set(took) == {"audio"} and took["audio"] > 0
    wave = warm_up_waveform(2.0)
    assert wave.shape == (32_000,) and wave.dtype == np.float32
    assert 0 < float(np.abs(wave).max()) < 0.5
    np.testing.assert_array_equal(wave, warm_up_waveform(2.0))  # deterministic
