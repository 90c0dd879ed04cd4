"""The process context: the stores and models a process opens once and every request,
job and task of it shares.

:func:`get_context` opens the configured stores through :mod:`storycue.storage.factory`
and caches them per database URL and vector location, so job functions can be pure
functions of ``(settings, job id, items)`` that are cheap to call many times, and a
model is registered (its row and collection written) once per process, not per request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from storycue.config import Settings
from storycue.log import get_logger
from storycue.models.batching import BatchedTextEncoder, install_batching
from storycue.models.checkpoints import find_model
from storycue.models.emotion import EmotionModel, load_configured_model
from storycue.pipeline.ingest import register_model
from storycue.storage.factory import open_metadata_store, open_vector_store
from storycue.storage.jobs import JobStore
from storycue.storage.metadata import MetadataStore
from storycue.storage.records import ModelRecord
from storycue.storage.tenancy import ApiKeyStore, TenantStore
from storycue.storage.vectors import VectorStore

log = get_logger(__name__)

#: Seconds a search reuses a catalogue's resolved active model (see
#: :meth:`ProcessContext.catalogue_model`); changes made by this process invalidate at once.
CATALOGUE_MODEL_TTL_S = 2.0


@dataclass
class ProcessContext:
    """Open stores (shared by every thread of the process) and loaded models."""

    settings: Settings
    metadata: MetadataStore
    vectors: VectorStore
    jobs: JobStore = field(init=False)
    tenancy: TenantStore = field(init=False)
    keys: ApiKeyStore = field(init=False)
    _model_cache: dict[tuple[str, int], tuple[float, EmotionModel]] = field(
        init=False, default_factory=dict, repr=False
    )
    _model_cache_gen: int = field(init=False, default=0, repr=False)
    _registered: dict[str, ModelRecord] = field(init=False, default_factory=dict, repr=False)
    _model_cache_lock: threading.Lock = field(
        init=False, default_factory=threading.Lock, repr=False
    )
    #: Set by :meth:`share_text_forwards` (the gateway): every model this context loads
    #: reads text through a greedy batcher shared by the process's threads.
    text_forwards_shared: bool = field(init=False, default=False)
    _batched: list[tuple[EmotionModel, BatchedTextEncoder]] = field(
        init=False, default_factory=list, repr=False
    )

    def __post_init__(self) -> None:
        self.jobs = JobStore(self.metadata.engine)
        self.tenancy = TenantStore(self.metadata)
        self.keys = ApiKeyStore(self.metadata.engine)

    # ---- models ---------------------------------------------------------------------------
    def load_model(self, name_or_path: str | Path | None = None) -> EmotionModel:
        """An emotion model (default: ``settings.emotion_model``), loaded once per process."""
        model = load_configured_model(self.settings, name_or_path)
        if self.text_forwards_shared and not isinstance(model.text_encoder, BatchedTextEncoder):
            with self._model_cache_lock:  # one batcher per model, however many threads ask
                if not isinstance(model.text_encoder, BatchedTextEncoder):
                    batched, _ = install_batching(model, self.settings, text=True, audio=False,
                                                  max_wait_ms=0)  # fmt: skip
                    if batched is not None:
                        self._batched.append((model, batched))
        return model

    def share_text_forwards(self) -> None:
        """Let concurrent requests of this process share text-encoder forward passes
        (``Settings.service.share_search_forwards``): each model's text encoder gets a greedy
        micro-batcher (no wait when idle; what queues behind a running pass joins the next
        one), so eight searches at once cost a few forward passes, not eight competing
        ones."""
        self.text_forwards_shared = True

    def load_model_version(self, name: str, version: str) -> EmotionModel:
        """The model ``name@version`` (one of :func:`available_models`)."""
        return self.load_model(find_model(self.settings, name, version).path)

    def register(self, model: EmotionModel) -> ModelRecord:
        """Register ``model`` in the database and make sure its vector collection exists."""
        return register_model(self.metadata, self.vectors, model)

    def ensure_registered(self, model: EmotionModel) -> ModelRecord:
        """:meth:`register` once per model and process, and its record: the read path
        (searches) and the per-event ingest of the Kafka consumer then touch neither the
        database nor the vector store's collections to do it. A model's row is keyed by
        its identity and checkpoint digest and never changes once written."""
        key = f"{model.identity.key}:{model.checkpoint_sha256}"
        with self._model_cache_lock:
            hit = self._registered.get(key)
        if hit is not None:
            return hit
        rec = self.register(model)
        with self._model_cache_lock:
            self._registered[key] = rec
        return rec

    def catalogue_model(
        self, tenant: str, catalogue_id: int | None, *, cached: bool = False
    ) -> EmotionModel:
        """The active model of a catalogue of ``tenant`` (the default model when unset).

        ``cached`` (searches): reuse this process's resolution for up to
        :data:`CATALOGUE_MODEL_TTL_S`. Every change of a catalogue's active model made in
        this process (``PUT /v1/catalogues/{c}/model``, catalogue deletion, a switch's
        promotion) calls :meth:`forget_catalogue_model`, so the TTL only bounds how long
        a change made by *another* process (a worker promoting a switch) goes unseen.
        """
        if catalogue_id is None:
            return self.load_model()
        key = (tenant, int(catalogue_id))
        if cached:
            with self._model_cache_lock:
                hit = self._model_cache.get(key)
                gen = self._model_cache_gen
            if hit is not None and time.monotonic() < hit[0]:
                return hit[1]
        rec = self.tenancy.active_model(tenant, catalogue_id)
        model = self.load_model() if rec is None else self.load_model_version(rec.name, rec.version)
        if cached:
            with self._model_cache_lock:
                if gen == self._model_cache_gen:  # no invalidation while resolving
                    self._model_cache[key] = (time.monotonic() + CATALOGUE_MODEL_TTL_S, model)
        return model

    def forget_catalogue_model(self, tenant: str, catalogue_id: int) -> None:
        """Drop the cached active model of a catalogue (its model changed or it is gone)."""
        with self._model_cache_lock:
            self._model_cache_gen += 1
            self._model_cache.pop((tenant, int(catalogue_id)), None)

    def close(self) -> None:
        """Close the stores, and stop the batchers this context put in front of its models'
        text encoders (each model gets its plain encoder back first)."""
        with self._model_cache_lock:
            batched, self._batched = self._batched, []
        for model, wrapper in batched:
            if model.text_encoder is wrapper:
                model.use_text_encoder(wrapper.inner)
            wrapper.close()
        self.metadata.close()


_lock = threading.Lock()
_contexts: dict[tuple[str, str], ProcessContext] = {}


def _key(settings: Settings) -> tuple[str, str]:
    vec = settings.qdrant_url or str(Path(settings.resolved_qdrant_path).expanduser().resolve())
    return settings.resolved_database_url, vec


def get_context(settings: Settings) -> ProcessContext:
    """The process's context for these settings' database and vector store."""
    key = _key(settings)
    with _lock:
        rt = _contexts.get(key)
        closed = rt is not None and (
            rt.metadata.closed or bool(getattr(rt.vectors, "closed", False))
        )
        if rt is None or closed:
            if rt is not None and not rt.metadata.closed:
                rt.metadata.close()
            rt = ProcessContext(
                settings=settings,
                metadata=open_metadata_store(settings),
                vectors=open_vector_store(settings),
            )
            _contexts[key] = rt
        return rt


def close_contexts() -> None:
    """Close every cached context (tests, shutdown)."""
    with _lock:
        rts = list(_contexts.values())
        _contexts.clear()
    for rt in rts:
        rt.close()
