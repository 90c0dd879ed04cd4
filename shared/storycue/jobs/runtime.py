"""The stores and models a job worker or the gateway needs, opened once per process.

:func:`get_runtime` opens the configured stores through :mod:`storycue.storage.factory`
and caches them per database URL and vector location, so job functions can be pure
functions of ``(settings, job id, items)`` that are cheap to call many times.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from storycue.config import Settings
from storycue.errors import ModelNotFoundError, NotFoundError
from storycue.log import get_logger
from storycue.models.checkpoints import (
    CheckpointInfo,
    checkpoint_info,
    find_checkpoint,
    list_checkpoints,
    model_search_dirs,
)
from storycue.models.emotion import EmotionModel, load_emotion_model
from storycue.pipeline.engine import Engine
from storycue.storage.factory import open_metadata_store, open_vector_store
from storycue.storage.jobs import JobStore
from storycue.storage.metadata import MetadataStore
from storycue.storage.records import ModelRecord
from storycue.storage.tenancy import ApiKeyStore, TenantStore
from storycue.storage.vectors import VectorStore

log = get_logger(__name__)

#: Seconds a search reuses a catalogue's resolved active model (see
#: :meth:`JobRuntime.catalogue_model`); changes made by this process invalidate at once.
CATALOGUE_MODEL_TTL_S = 2.0


@dataclass(frozen=True)
class ModelEntry:
    """An emotion-model checkpoint available to this process."""

    path: Path
    info: CheckpointInfo


def available_models(settings: Settings) -> list[ModelEntry]:
    """Every readable checkpoint of :func:`model_search_dirs` (shipped, ``model_dir``,
    ``<home>/models``)."""
    out: list[ModelEntry] = []
    for path in list_checkpoints(model_search_dirs(settings)):
        try:
            out.append(ModelEntry(path=path, info=checkpoint_info(path)))
        except (ModelNotFoundError, ValueError) as exc:
            log.warning("unreadable checkpoint skipped", path=str(path), error=str(exc))
    out.sort(key=lambda e: (e.info.identity.name, e.info.identity.version))
    return out


def find_model(settings: Settings, name: str, version: str) -> ModelEntry:
    """The checkpoint of ``name@version``, or :class:`NotFoundError`."""
    for entry in available_models(settings):
        ident = entry.info.identity
        if ident.name == name and ident.version == version:
            return entry
    raise NotFoundError(
        f"model {name}@{version} is not available", detail={"name": name, "version": version}
    )


@dataclass
class JobRuntime:
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

    def __post_init__(self) -> None:
        self.jobs = JobStore(self.metadata.engine)
        self.tenancy = TenantStore(self.metadata)
        self.keys = ApiKeyStore(self.metadata.engine)

    # ---- models ---------------------------------------------------------------------------
    def load_model(self, name_or_path: str | Path | None = None) -> EmotionModel:
        """An emotion model (default: ``settings.emotion_model``), loaded once per process."""
        s = self.settings
        target = str(name_or_path or s.emotion_model)
        return load_emotion_model(
            str(find_checkpoint(target, s)),
            device=s.torch_device(),
            text_batch_size=s.batch.text,
            text_max_tokens=s.text_max_tokens,
            musicnn_weights_dir=s.musicnn_weights_dir,
        )

    def load_model_version(self, name: str, version: str) -> EmotionModel:
        """The model ``name@version`` (one of :func:`available_models`)."""
        return self.load_model(find_model(self.settings, name, version).path)

    def engine(self, model: EmotionModel) -> Engine:
        """An :class:`Engine` on this runtime's stores with ``model``."""
        return Engine(self.settings, model=model, metadata=self.metadata, vectors=self.vectors)

    def register(self, model: EmotionModel) -> ModelRecord:
        """Register ``model`` in the database and make sure its vector collection exists."""
        rec = self.metadata.register_model(
            model.identity,
            family=model.info.family,
            distance=model.distance,
            checkpoint_sha256=model.checkpoint_sha256 or None,
            metadata={
                "text_encoder": model.info.text_encoder,
                "audio_backbone": model.info.audio_backbone,
                "audio_backbone_version": model.info.audio_backbone_version,
            },
        )
        self.vectors.ensure_collection(model.identity, model.distance)
        return rec

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
        self.metadata.close()


_lock = threading.Lock()
_runtimes: dict[tuple[str, str], JobRuntime] = {}


def _key(settings: Settings) -> tuple[str, str]:
    vec = settings.qdrant_url or str(Path(settings.resolved_qdrant_path).expanduser().resolve())
    return settings.resolved_database_url, vec


def get_runtime(settings: Settings) -> JobRuntime:
    """The process's runtime for these settings' database and vector store."""
    key = _key(settings)
    with _lock:
        rt = _runtimes.get(key)
        closed = rt is not None and (
            rt.metadata.closed or bool(getattr(rt.vectors, "closed", False))
        )
        if rt is None or closed:
            if rt is not None and not rt.metadata.closed:
                rt.metadata.close()
            rt = JobRuntime(
                settings=settings,
                metadata=open_metadata_store(settings),
                vectors=open_vector_store(settings),
            )
            _runtimes[key] = rt
        return rt


def close_runtimes() -> None:
    """Close every cached runtime (tests, shutdown)."""
    with _lock:
        rts = list(_runtimes.values())
        _runtimes.clear()
    for rt in rts:
        rt.close()
