"""Lazy, thread-safe model loading shared by every encoder.

Heavy weights are loaded on first use (not at import or construction), exactly once per
instance even when several threads ask at the same time, and the load time is recorded so
that services can report it.

Every load in the process runs under one re-entrant lock, :data:`MODEL_LOAD_LOCK`, not
only one lock per instance: the libraries that build the models keep global state while
they do (``transformers`` builds a model on the ``meta`` device inside context managers
that patch ``torch.nn`` for the whole process, and resolves its lazy ``from transformers
import AutoModel`` through a module-level table), so two *different* instances loading at
once, e.g. a training job's private text encoder beside the search path's, failed with
``Cannot copy out of meta tensor`` or ``cannot import name 'AutoModel'``. Loads are rare
(once per model per process), so serialising them costs nothing at steady state.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from storycue.log import get_logger
from storycue.metrics import record_model_load

T = TypeVar("T")
log = get_logger(__name__)

#: Held by every model load of the process (re-entrant: a load may load its parts).
MODEL_LOAD_LOCK = threading.RLock()


class LazyModel(ABC, Generic[T]):
    """Holds a loaded model object of type ``T``; subclasses implement :meth:`_load`."""

    def __init__(self) -> None:
        self._model: T | None = None
        self.load_seconds: float | None = None

    #: The ``component`` label of ``storycue_model_load_seconds`` for this kind of model.
    metric_component = "model"

    @abstractmethod
    def _load(self) -> T:
        """Load and return the underlying model (called once, under MODEL_LOAD_LOCK)."""

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self) -> T:
        """The loaded model, loading it on first call."""
        model = self._model
        if model is not None:
            return model
        with MODEL_LOAD_LOCK:
            if self._model is None:
                start = time.perf_counter()
                self._model = self._load()
                self.load_seconds = time.perf_counter() - start
                record_model_load(
                    self.metric_component, str(getattr(self, "name", "")), self.load_seconds
                )
                log.info(
                    "model_loaded", model=type(self).__name__, seconds=round(self.load_seconds, 3)
                )
            return self._model


class TextEncoding(Protocol):
    """What an emotion model needs of its text encoder: :class:`~storycue.models.text.TextEncoder`
    and the wrappers that stand in for it (the micro-batcher) are this."""

    @property
    def name(self) -> str:
        """The encoder's identity (hub id, folder or ``<base>+ft-<digest>``)."""

    @property
    def max_tokens(self) -> int:
        """Tokens a text is cut to (a longer one is split by the caller or truncated)."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text is, special tokens included."""

    def encode(self, texts: Sequence[str], *, allow_truncation: bool = False) -> np.ndarray:
        """Pooled features ``(len(texts), dim)``."""


class AudioEmbedding(Protocol):
    """What an emotion model needs of its audio backbone:
    :class:`~storycue.models.musicnn.MusicnnBackbone` and its micro-batching wrapper."""

    @property
    def name(self) -> str:
        """The backbone's identity (``MTT_musicnn``, ``MSD_vgg``, a fine-tuned name)."""

    @property
    def version(self) -> str:
        """The version of its weights (the ``musicnn`` package's)."""

    def embed_waveform(
        self, wave16k: np.ndarray, *, policy: Any = ..., batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """The clip's backbone features by key (``penultimate``, ``tags``, ...)."""
