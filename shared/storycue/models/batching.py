"""Micro-batching of encoder calls in the GPU workers.

A worker runs several tasks at once (Celery's thread pool); each task asks the encoder for
a few vectors. :class:`MicroBatcher` gathers those requests into one forward pass: a batch
closes when it holds ``max_batch`` units of work (text segments, or 3 s mel patches) or when
``max_wait_ms`` has passed since its first request, whichever comes first. Sizes and wait
come from ``Settings.batch``, the device from ``Settings.device``.

:class:`BatchedTextEncoder` and :class:`BatchedAudioBackbone` put a batcher in front of the
text encoder and the musicnn backbone with the interfaces the engine already calls, and
:func:`install_batching` wires both into an :class:`~storycue.models.emotion.EmotionModel`.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from storycue.config import Settings, get_settings
from storycue.errors import ConfigurationError, InvalidInputError
from storycue.log import get_logger
from storycue.models.musicnn.backbone import PatchPool

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    """Counters of one batcher (read them for metrics and tests): ``items`` are requests
    (one :meth:`BatchedTextEncoder.encode` call each, on the text side), ``units`` what
    they weigh (text segments, mel patches)."""

    batches: int = 0
    items: int = 0
    units: int = 0
    largest_batch_units: int = 0
    last_batch_units: int = 0


@dataclass
class _Request(Generic[T, R]):
    item: T
    units: int
    future: Future[R]


_STOP = object()


class MicroBatcher(Generic[T, R]):
    """Gather single requests into batches for ``fn``.

    ``fn`` receives a list of items and must return one result per item, in order.
    ``weight`` gives the units one item counts for (default 1); a batch never exceeds
    ``max_batch`` units, except an item that alone weighs more, which runs on its own.
    Requests from any number of threads; ``fn`` runs on the batcher's ``streams`` threads
    (default one). With more than one, batches are gathered one at a time (a batch waits
    for companions while the previous one runs) and up to ``streams`` run at once, so
    ``fn`` must be thread-safe: two forward passes of one thread each keep two cores busy
    where one pass of two threads stalls whenever other work takes one of its cores.

    ``max_gather`` (default ``max_batch``): once a batch has closed, requests that are
    already queued (a backlog) join it without any further wait, up to ``max_gather``
    units, for an ``fn`` that cuts its input into forward passes itself (the text encoder
    sorts a call's segments by length before cutting them into batches, so a larger call
    pads less). It never delays a flush.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        max_wait_ms: float,
        weight: Callable[[T], int] | None = None,
        name: str = "batcher",
        max_gather: int | None = None,
        streams: int = 1,
    ) -> None:
        if streams < 1:
            raise ConfigurationError(f"streams must be >= 1, got {streams}")
        if max_batch < 1:
            raise ConfigurationError(f"max_batch must be >= 1, got {max_batch}")
        if max_gather is not None and max_gather < max_batch:
            raise ConfigurationError(
                f"max_gather must be >= max_batch ({max_batch}), got {max_gather}"
            )
        if max_wait_ms < 0:
            raise ConfigurationError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._fn = fn
        self.max_batch = max_batch
        self.max_gather = max_batch if max_gather is None else max_gather
        self.max_wait_s = max_wait_ms / 1000.0
        self._weight = weight or (lambda _item: 1)
        self.name = name
        self.stats = BatchStats()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._held: _Request[T, R] | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._gather_lock = threading.Lock()  # one thread gathers a batch at a time
        self._stats_lock = threading.Lock()
        self._stopping = False
        self.streams = streams
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-batcher-{i}", daemon=True)
            for i in range(streams)
        ]
        for thread in self._threads:
            thread.start()

    # ---- callers ---------------------------------------------------------------------
    def submit(self, item: T) -> Future[R]:
        """Queue one item; the future resolves to its result (or the batch's error)."""
        units = int(self._weight(item))
        if units < 1:
            raise InvalidInputError(f"an item must weigh at least 1 unit, got {units}")
        fut: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise ConfigurationError(f"batcher {self.name} is closed")
            self._queue.put(_Request(item, units, fut))
        return fut

    def map(self, items: Sequence[T], timeout_s: float | None = None) -> list[R]:
        """Results of ``items`` in order (each may land in a different batch)."""
        futures = [self.submit(it) for it in items]
        return [f.result(timeout=timeout_s) for f in futures]

    def close(self) -> None:
        """Finish the queued requests, then stop the threads (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()

    # ---- the batching thread -----------------------------------------------------------
    def _next(self, timeout: float | None) -> _Request[T, R] | object | None:
        if self._held is not None:
            req, self._held = self._held, None
            return req
        try:
            got: _Request[T, R] | object
            if timeout is not None and timeout <= 0:
                got = self._queue.get_nowait()
            else:
                got = self._queue.get(timeout=timeout)
            return got
        except queue.Empty:
            return None

    def _gather(
        self, batch: list[_Request[T, R]], units: int, limit: int, deadline: float | None
    ) -> tuple[int, bool]:
        """Add queued requests to ``batch`` while they fit in ``limit`` units, waiting until
        ``deadline`` (``None``: take only what is already queued); ``(units, stopping)``.
        A request that does not fit is held back to start the next batch."""
        while units < limit:
            nxt = self._next(0 if deadline is None else deadline - time.monotonic())
            if nxt is None:
                return units, False
            if nxt is _STOP:
                return units, True
            assert isinstance(nxt, _Request)
            if units + nxt.units > limit:
                self._held = nxt  # starts the next batch
                return units, False
            batch.append(nxt)
            units += nxt.units
        return units, False

    def _run(self) -> None:
        while True:
            with self._gather_lock:
                taken = None if self._stopping else self._take_batch()
            if taken is None:
                break
            self._execute(*taken)
        # Drain whatever was queued before close() (one stream after the other).
        with self._gather_lock:
            while True:
                rest = self._next(0)
                if rest is None or rest is _STOP:
                    break
                assert isinstance(rest, _Request)
                self._execute([rest], rest.units)

    def _take_batch(self) -> tuple[list[_Request[T, R]], int] | None:
        """The next batch (under the gather lock), or ``None`` once the batcher stops."""
        first = self._next(None)
        if first is _STOP:
            self._stopping = True
            return None
        assert isinstance(first, _Request)
        batch: list[_Request[T, R]] = [first]
        deadline = time.monotonic() + self.max_wait_s
        units, stopping = self._gather(batch, first.units, self.max_batch, deadline)
        if not stopping:  # the backlog, no waiting
            units, stopping = self._gather(batch, units, self.max_gather, None)
        self._stopping = stopping
        return batch, units

    def _execute(self, batch: list[_Request[T, R]], units: int) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = list(self._fn([r.item for r in live]))
            if len(results) != len(live):
                raise RuntimeError(
                    f"batch function of {self.name} returned {len(results)} results "
                    f"for {len(live)} items"
                )
        except BaseException as exc:  # every waiter learns of the failure
            for r in live:
                r.future.set_exception(exc)
            log.warning("batch_failed", batcher=self.name, items=len(live), error=str(exc))
            return
        # Count the batch before any waiter wakes: whoever reads the stats after its
        # result came back sees its batch counted.
        with self._stats_lock:
            s = self.stats
            s.batches += 1
            s.items += len(live)
            s.units += units
            s.last_batch_units = units
            s.largest_batch_units = max(s.largest_batch_units, units)
        for r, res in zip(live, results, strict=True):
            r.future.set_result(res)


class BatchedTextEncoder:
    """A text encoder whose :meth:`encode` calls from many threads share forward passes.

    Everything else (``name``, ``dim``, ``max_tokens``, ``count_tokens`` ...) is the
    wrapped encoder's, so it can stand in for it (``EmotionModel.use_text_encoder``).

    Each :meth:`encode` call is *one* request that weighs its number of segments, so a
    call's segments always share a flush: a bulk task's chunk of stories (up to
    ``queue.job_chunk_size`` of them) is sorted by token length as a whole, not cut into
    whatever part of it was queued when a flush closed. A flush closes at ``max_batch``
    segments (or the wait), then takes the calls already queued behind it while they fit in
    ``gather`` × ``max_batch`` segments; a call larger than that runs in a flush of its own.
    The wrapped encoder's ``encode`` sorts the flush by token length and runs it in
    length-homogeneous forward passes of its own batch size (``settings.batch.text``), and
    each call gets its rows back. Arrival order thus no longer decides which lengths share a
    forward pass. (``bench/bulk.py``: with per-segment requests, 512-story chunks reached
    the encoder as flushes of 64–192 segments and padded 37 % more than a sorted chunk.)
    """

    def __init__(
        self,
        encoder: Any,
        *,
        max_batch: int,
        max_wait_ms: float,
        gather: int = 4,
        streams: int = 1,
    ) -> None:
        if gather < 1:
            raise ConfigurationError(f"gather must be >= 1, got {gather}")
        self._encoder = encoder
        self.batcher: MicroBatcher[list[str], np.ndarray] = MicroBatcher(
            self._encode_calls,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            weight=len,
            name="text",
            max_gather=gather * max_batch,
            streams=streams,
        )

    def _encode_calls(self, calls: list[list[str]]) -> list[np.ndarray]:
        # encode() sorts the whole flush by token length and cuts forward passes of
        # batch_size itself; each call gets its own rows back, in its order.
        out = np.asarray(self._encoder.encode([t for c in calls for t in c]), dtype=np.float32)
        bounds = np.cumsum([0, *(len(c) for c in calls)])
        return [out[a:b] for a, b in itertools.pairwise(bounds)]

    def encode(self, texts: Sequence[str], *, allow_truncation: bool = False) -> np.ndarray:
        if allow_truncation:  # the rare truncating call goes straight through
            return np.asarray(self._encoder.encode(texts, allow_truncation=True), dtype=np.float32)
        if isinstance(texts, str):
            raise InvalidInputError("encode expects a sequence of texts, not one string")
        if len(texts) == 0:
            return np.asarray(self._encoder.encode([]), dtype=np.float32)
        return self.batcher.submit(list(texts)).result()

    @property
    def inner(self) -> Any:
        """The wrapped encoder."""
        return self._encoder

    def close(self) -> None:
        self.batcher.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)


class BatchedAudioBackbone:
    """The musicnn backbone with patches of concurrent clips sharing forward passes.

    :meth:`embed_waveform` returns the same features as the wrapped backbone's (mean of
    every output over the clip's patches, ``tags_max`` the per-tag maximum); a batch holds
    at most ``max_patches`` patches, possibly of several clips.
    """

    def __init__(self, backbone: Any, *, max_patches: int, max_wait_ms: float) -> None:
        self._backbone = backbone
        self.max_patches = max_patches
        self.batcher: MicroBatcher[torch.Tensor, dict[str, torch.Tensor]] = MicroBatcher(
            self._forward,
            max_batch=max_patches,
            max_wait_ms=max_wait_ms,
            weight=lambda p: int(p.shape[0]),
            name="audio",
        )

    def _forward(self, groups: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        sizes = [int(g.shape[0]) for g in groups]
        out = self._backbone.forward_patches(torch.cat(groups) if len(groups) > 1 else groups[0])
        results: list[dict[str, torch.Tensor]] = []
        start = 0
        for n in sizes:
            results.append({k: v[start : start + n] for k, v in out.items()})
            start += n
        return results

    def embed_waveform(
        self, wave16k: np.ndarray, *, policy: Any = "track", batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        from storycue.audio.mel import MelFrontend

        arr = np.asarray(wave16k)
        if arr.ndim != 1 or arr.size == 0:
            raise InvalidInputError(
                f"embed_waveform expects a non-empty mono 1-D waveform, got shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
            raise InvalidInputError("embed_waveform expects finite float samples")
        step = min(batch_size or self.max_patches, self.max_patches)
        with torch.inference_mode():
            wave = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            logmel = self._backbone.mel.logmel_long(wave)
            patches = MelFrontend.patches(logmel, policy=policy)
        n = int(patches.shape[0])
        if n == 0:
            raise InvalidInputError(f"clip too short for policy {policy!r}: no 3 s patch")
        futures = [self.batcher.submit(patches[i : i + step]) for i in range(0, n, step)]
        pool = PatchPool()
        for fut in futures:
            pool.add(fut.result())
        return pool.result()

    def close(self) -> None:
        self.batcher.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backbone, name)


def install_batching(
    model: Any,
    settings: Settings | None = None,
    *,
    text: bool = True,
    audio: bool = True,
    max_wait_ms: float | None = None,
) -> tuple[BatchedTextEncoder | None, BatchedAudioBackbone | None]:
    """Put micro-batchers in front of ``model``'s encoders (an ``EmotionModel``).

    Loads the encoders on the configured device (``Settings.device``) and returns the
    batching wrappers (``None`` for a side not asked for); close them at shutdown.
    ``max_wait_ms`` (default ``Settings.batch.max_wait_ms``): 0 makes the batchers
    greedy, as the gateway's searches want them: a request runs at once when the encoder
    is idle and the requests queued behind a running pass share the next one.
    An encoder that is already batched keeps its batcher.
    """
    s = settings or get_settings()
    wait = s.batch.max_wait_ms if max_wait_ms is None else max_wait_ms
    text_enc: BatchedTextEncoder | None = None
    audio_bb: BatchedAudioBackbone | None = None
    if text:
        inner = model.text_encoder  # already batched when installed twice
        text_enc = (
            inner
            if isinstance(inner, BatchedTextEncoder)
            else BatchedTextEncoder(
                inner, max_batch=s.batch.text, max_wait_ms=wait, streams=s.batch.text_streams
            )
        )
        model.use_text_encoder(text_enc)
    if audio:
        current = model.audio_backbone()
        audio_bb = (
            current
            if isinstance(current, BatchedAudioBackbone)
            else BatchedAudioBackbone(current, max_patches=s.batch.audio_patches, max_wait_ms=wait)
        )
        model.use_audio_backbone(audio_bb)
    log.info(
        "batching_installed",
        device=s.torch_device(),
        text_batch=s.batch.text if text else None,
        text_streams=s.batch.text_streams if text else None,
        audio_patches=s.batch.audio_patches if audio else None,
        max_wait_ms=wait,
    )
    return text_enc, audio_bb
