"""The :class:`~storycue.storage.vectors.VectorStore` on Qdrant Edge (``qdrant-edge-py``).

Qdrant Edge is Qdrant's own engine embedded in the process: segments, HNSW graphs and
payload indexes, with no server. qdrant-client's local mode, by contrast, scans every point
in Python; at 100k tracks that is tens of milliseconds per search and far more with a
filter (see ``docs/scale.md``). This store is the embedded default of
``vector_backend="auto"``.

Layout on disk, under one root folder (``<STORYCUE_HOME>/qdrant-edge`` by default)::

    <root>/<collection name>/storycue.json   model identity and distance (atomic writes)
    <root>/<collection name>/shard/          the Edge shard (segments, WAL, config)

    <root>/aliases.json                      collection aliases (atomic writes)

One Edge shard per collection, i.e. per :class:`~storycue.identity.ModelIdentity`. A
collection folder is created under a temporary name and renamed into place once its
shard and identity file exist, so a crash never leaves a half-made collection.

Indexing: a shard searches new points by brute force until its optimizer builds the HNSW
graph. Edge has no background threads, so :meth:`EdgeVectorStore.upsert` runs the
optimizer itself (a no-op, about 60 µs, until a segment passes the indexing threshold,
about 20 MB of vectors; then it blocks while the graph is built). Payload indexes on the
standard fields (catalogue, track, duration, tags) are created with the collection, so
filtered searches use them and the HNSW graph gets filter-aware links.

An Edge shard locks its write-ahead log: one process at a time may open a root folder.
Within a process, share one store (:func:`storycue.storage.open_vector_store` caches it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Self, cast

import qdrant_edge as qe

from storycue.errors import (
    ConfigurationError,
    InvalidInputError,
    ModelMismatchError,
    NotFoundError,
    StorycueError,
)
from storycue.identity import ModelIdentity
from storycue.log import get_logger
from storycue.storage.records import DISTANCES, Distance
from storycue.storage.vectors import (
    PAYLOAD_CATALOGUE_ID,
    PAYLOAD_DURATION_S,
    PAYLOAD_TAGS,
    PAYLOAD_TRACK_ID,
    CheckedVectorStore,
    CollectionInfo,
    SearchFilter,
    StoredVector,
    VectorHit,
    VectorPoint,
    as_vector,
    check_alias_name,
    normalize_point_id,
    stored_vectors,
)

log = get_logger(__name__)

#: File holding storycue's record of a collection (identity, distance).
IDENTITY_FILE = "storycue.json"
#: Folder of the Edge shard inside a collection folder.
SHARD_DIR = "shard"
#: File under the root holding the collection aliases (Edge itself has none).
ALIASES_FILE = "aliases.json"
#: Version of the identity file's layout.
METADATA_SCHEMA = 1
#: Default HNSW beam width at query time (Qdrant's own default is the graph's ef_construct).
DEFAULT_HNSW_EF = 128
_UPSERT_BATCH = 1024
_TMP_PREFIX = ".creating-"

_TO_EDGE: dict[Distance, qe.Distance] = {
    "cosine": qe.Distance.Cosine,
    "euclid": qe.Distance.Euclid,
    "dot": qe.Distance.Dot,
}


def _payload_indexes() -> dict[str, Any]:
    """Payload index of each standard field (created with every collection)."""
    return {
        PAYLOAD_CATALOGUE_ID: qe.IntegerIndexParams(lookup=True, range=False),
        PAYLOAD_TRACK_ID: qe.IntegerIndexParams(lookup=True, range=False),
        PAYLOAD_DURATION_S: qe.PayloadSchemaType.Float,
        PAYLOAD_TAGS: qe.PayloadSchemaType.Keyword,
    }


def edge_version() -> str:
    """Installed version of ``qdrant-edge-py`` (recorded with each collection)."""
    try:
        return importlib_metadata.version("qdrant-edge-py")
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover - imported above
        return "unknown"


def build_edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    """The Edge filter of a :class:`SearchFilter` (``None`` when it has no condition)."""
    if flt is None or flt.is_empty:
        return None
    must: list[Any] = []
    if flt.catalogue_ids is not None:
        must.append(
            qe.FieldCondition(
                PAYLOAD_CATALOGUE_ID, match=qe.MatchAny([int(c) for c in flt.catalogue_ids])
            )
        )
    if flt.min_duration_s is not None or flt.max_duration_s is not None:
        must.append(
            qe.FieldCondition(
                PAYLOAD_DURATION_S,
                range=qe.RangeFloat(gte=flt.min_duration_s, lte=flt.max_duration_s),
            )
        )
    if flt.tags_any is not None:
        must.append(
            qe.FieldCondition(PAYLOAD_TAGS, match=qe.MatchAny([str(t) for t in flt.tags_any]))
        )
    return qe.Filter(must=must)


@dataclass(frozen=True, slots=True)
class _Record:
    """What ``storycue.json`` holds."""

    identity: ModelIdentity | None
    distance: Distance | None
    dim: int | None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_record(folder: Path) -> _Record:
    """The identity recorded in a collection folder (all ``None`` when foreign/unreadable)."""
    try:
        meta = json.loads((folder / IDENTITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _Record(None, None, None)
    if not isinstance(meta, dict):
        return _Record(None, None, None)
    identity: ModelIdentity | None
    try:
        identity = ModelIdentity(
            name=meta["model_name"], version=meta["model_version"], dim=meta["dim"]
        )
    except (KeyError, ValueError, TypeError):
        identity = None
    distance = cast(Distance, meta["distance"]) if meta.get("distance") in DISTANCES else None
    dim = meta.get("dim") if isinstance(meta.get("dim"), int) else None
    return _Record(identity, distance, dim)


class EdgeVectorStore(CheckedVectorStore):
    """Vectors in Qdrant Edge shards under one folder, one shard per model identity.

    ``hnsw_ef``: beam width of HNSW searches (higher: better recall, slower).
    ``hnsw_m`` / ``hnsw_ef_construct``: graph degree and build beam of new collections.
    ``max_search_threads``: Edge's search pool size (default: from the CPU count).
    ``indexing_threshold_kb``: vectors a segment holds (KB) before it gets an HNSW graph
    (default: Qdrant's, 20 MB); applies to collections created by this store.
    ``auto_optimize``: run the segment optimizer after every upsert (see the module doc);
    turn it off for a bulk load and call :meth:`optimize` once at the end.

    Thread-safe: calls are serialised on one lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        hnsw_ef: int = DEFAULT_HNSW_EF,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        max_search_threads: int | None = None,
        indexing_threshold_kb: int | None = None,
        auto_optimize: bool = True,
    ) -> None:
        if hnsw_ef < 1 or hnsw_m < 0 or hnsw_ef_construct < 4:
            raise ConfigurationError(
                f"bad HNSW parameters: ef={hnsw_ef}, m={hnsw_m}, ef_construct={hnsw_ef_construct}"
            )
        self.root = Path(path).expanduser().resolve()
        self.location = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the Qdrant Edge folder {self.root}: {exc}",
                detail={"path": str(self.root)},
            ) from exc
        self.hnsw_ef = hnsw_ef
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construct = hnsw_ef_construct
        self.max_search_threads = max_search_threads
        self.indexing_threshold_kb = indexing_threshold_kb
        self.auto_optimize = auto_optimize
        self._lock = threading.RLock()
        self._shards: dict[str, qe.EdgeShard] = {}
        self._verified: dict[str, tuple[ModelIdentity, Distance]] = {}
        self._closed = False
        log.debug("edge vector store opened", location=self.location)

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def is_local(self) -> bool:
        """Always embedded (for callers that check like on :class:`QdrantVectorStore`)."""
        return True

    def close(self) -> None:
        """Flush and close every open shard, releasing their locks (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._verified.clear()
            shards, self._shards = self._shards, {}
        for name, shard in shards.items():
            try:
                shard.close()
            except Exception as exc:  # closing must not raise half-way through
                log.warning("closing an edge shard failed", collection=name, error=str(exc))
        log.debug("edge vector store closed", location=self.location)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _use(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise ConfigurationError(f"the vector store at {self.location} is closed")
            yield

    # ---- shards ------------------------------------------------------------------------
    def _config(self, dim: int, distance: Distance) -> qe.EdgeConfig:
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=_TO_EDGE[distance]),
            hnsw_config=qe.HnswIndexConfig(
                m=self.hnsw_m,
                ef_construct=self.hnsw_ef_construct,
                full_scan_threshold=10_000,
                max_indexing_threads=0,
            ),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold_kb),
            max_search_threads=self.max_search_threads,
        )

    def _folder(self, name: str) -> Path:
        return self.root / name

    def _shard(self, name: str) -> qe.EdgeShard:
        """The open shard of collection ``name`` (loaded on first use)."""
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        path = self._folder(name) / SHARD_DIR
        if not path.is_dir():
            raise NotFoundError(f"collection {name} has no Edge shard at {path}")
        try:
            shard = qe.EdgeShard.load(str(path))
        except Exception as exc:
            raise ConfigurationError(
                f"cannot open the Qdrant Edge shard {path}: {exc} (an Edge folder is locked by "
                "the process that opened it: share the store from open_vector_store, or run "
                "a Qdrant server and set STORYCUE_QDRANT_URL)",
                detail={"path": str(path)},
            ) from exc
        self._shards[name] = shard
        return shard

    def _verify(self, identity: ModelIdentity) -> tuple[qe.EdgeShard, Distance]:
        """The identity's shard and distance, after checking the collection belongs to it."""
        name = identity.collection_name
        cached = self._verified.get(name)
        if cached is not None:
            identity.require_same(cached[0], what=f"collection {name}")
            return self._shard(name), cached[1]
        folder = self._folder(name)
        if not folder.is_dir():
            raise NotFoundError(
                f"no vector collection for model {identity.key}: call ensure_collection first",
                detail={"collection": name, "model": identity.key},
            )
        rec = _read_record(folder)
        if rec.identity is None or rec.distance is None:
            raise ModelMismatchError(
                f"collection {name} was not created by storycue (no model identity recorded)",
                detail={"collection": name, "model": identity.key},
            )
        identity.require_same(rec.identity, what=f"collection {name}")
        if rec.dim != identity.dim:
            raise ModelMismatchError(
                f"collection {name} stores {rec.dim}-d vectors, model {identity.key} makes "
                f"{identity.dim}-d ones",
                detail={"collection": name, "dim": rec.dim, "expected_dim": identity.dim},
            )
        shard = self._shard(name)
        self._verified[name] = (rec.identity, rec.distance)
        return shard, rec.distance

    def _create(self, identity: ModelIdentity, distance: Distance) -> None:
        """Make the collection folder under a temporary name, then rename it into place."""
        name = identity.collection_name
        tmp = self.root / f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
        try:
            shard = qe.EdgeShard.create(str(tmp / SHARD_DIR), self._config(identity.dim, distance))
            try:
                for field_name, schema in _payload_indexes().items():
                    shard.update(qe.UpdateOperation.create_field_index(field_name, schema))
            finally:
                shard.close()
            _write_json_atomic(
                tmp / IDENTITY_FILE,
                {
                    "schema": METADATA_SCHEMA,
                    "model_name": identity.name,
                    "model_version": identity.version,
                    "dim": identity.dim,
                    "distance": distance,
                    "backend": "qdrant-edge",
                    "qdrant_edge_version": edge_version(),
                },
            )
            os.rename(tmp, self._folder(name))
        except OSError as exc:
            if self._folder(name).is_dir():  # someone else created it meanwhile: verify theirs
                return
            raise StorycueError(
                f"cannot create vector collection {name} in {self.root}: {exc}",
                detail={"collection": name},
            ) from exc
        except Exception as exc:  # qdrant_edge raises plain Exception
            raise StorycueError(
                f"cannot create vector collection {name}: {exc}", detail={"collection": name}
            ) from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("vector collection created", collection=name, model=identity.key, backend="edge")

    # ---- VectorStore -------------------------------------------------------------------
    def _create_or_verify(self, identity: ModelIdentity, distance: Distance) -> Distance:
        with self._use():
            if not self._folder(identity.collection_name).is_dir():
                self._create(identity, distance)
            return self._verify(identity)[1]

    def upsert(self, identity: ModelIdentity, points: Sequence[VectorPoint]) -> None:
        """Insert or replace ``points``; every vector must have ``identity.dim`` values."""
        edge_points = [
            qe.Point(normalize_point_id(p.id), as_vector(p.vector, identity.dim), dict(p.payload))
            for p in points
        ]
        with self._use():
            shard, _ = self._verify(identity)
            try:
                for i in range(0, len(edge_points), _UPSERT_BATCH):
                    shard.update(
                        qe.UpdateOperation.upsert_points(edge_points[i : i + _UPSERT_BATCH])
                    )
                if self.auto_optimize and edge_points:
                    shard.optimize()
            except Exception as exc:
                raise StorycueError(
                    f"upsert into {identity.collection_name} failed: {exc}",
                    detail={"collection": identity.collection_name},
                ) from exc

    def optimize(self, identity: ModelIdentity) -> bool:
        """Run the identity's segment optimizer now (builds HNSW graphs); whether it did work."""
        with self._use():
            shard, _ = self._verify(identity)
            return bool(shard.optimize())

    def _request(self, query: list[float], top_k: int, edge_filter: Any) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=top_k,
            query=qe.Query.Nearest(query),
            filter=edge_filter,
            with_payload=True,
            with_vector=False,
            params=qe.SearchParams(hnsw_ef=max(self.hnsw_ef, top_k)),
        )

    @staticmethod
    def _hits(points: Sequence[Any], distance: Distance) -> list[VectorHit]:
        return [
            VectorHit(
                id=str(p.id), score=float(p.score), payload=dict(p.payload or {}), distance=distance
            )
            for p in points
        ]

    def _search(
        self, identity: ModelIdentity, query: list[float], top_k: int, flt: SearchFilter | None
    ) -> list[VectorHit]:
        request = self._request(query, top_k, build_edge_filter(flt))
        with self._use():
            shard, distance = self._verify(identity)
            points = shard.query(request)
        return self._hits(points, distance)

    def _search_batch(
        self,
        identity: ModelIdentity,
        queries: list[list[float]],
        top_k: int,
        flt: SearchFilter | None,
    ) -> list[list[VectorHit]]:
        # One planned batch (the shard's query_batch: about a third of the CPU of one
        # query() call each at 10k points), the filter built once.
        edge_filter = build_edge_filter(flt)
        batch = qe.QueryBatchRequest([self._request(q, top_k, edge_filter) for q in queries])
        with self._use():
            shard, distance = self._verify(identity)
            results = shard.query_batch(batch)
        return [self._hits(points, distance) for points in results]

    def delete(self, identity: ModelIdentity, ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids are ignored."""
        wanted: list[qe.PointId] = [normalize_point_id(i) for i in ids]
        with self._use():
            shard, _ = self._verify(identity)
            if wanted:
                shard.update(qe.UpdateOperation.delete_points(wanted))

    def count(self, identity: ModelIdentity, flt: SearchFilter | None = None) -> int:
        """Exact number of points matching ``flt`` (all points when ``None``)."""
        edge_filter = build_edge_filter(flt)
        with self._use():
            shard, _ = self._verify(identity)
            if edge_filter is None:  # the shard keeps the total: no scan (µs, not ms)
                return int(shard.info().points_count)
            return int(shard.count(qe.CountRequest(exact=True, filter=edge_filter)))

    def retrieve(self, identity: ModelIdentity, ids: Sequence[str]) -> list[StoredVector]:
        """Points by id with vectors and payloads, in the order asked; unknown skipped."""
        wanted = [normalize_point_id(i) for i in ids]
        asked: list[qe.PointId] = list(wanted)
        with self._use():
            shard, _ = self._verify(identity)
            records = shard.retrieve(asked, with_payload=True, with_vector=True) if wanted else []
        return stored_vectors(identity, [(r.id, r.vector, r.payload) for r in records], wanted)

    def collections(self) -> list[CollectionInfo]:
        """Every collection, with the identity storycue recorded (``None`` if foreign)."""
        with self._use():
            out = []
            for folder in sorted(self.root.iterdir()):
                if not folder.is_dir() or folder.name.startswith("."):
                    continue
                rec = _read_record(folder)
                out.append(
                    CollectionInfo(
                        name=folder.name, identity=rec.identity, distance=rec.distance, dim=rec.dim
                    )
                )
        return out

    def drop_collection(self, identity: ModelIdentity) -> bool:
        """Delete the identity's collection and all its vectors; whether it existed."""
        name = identity.collection_name
        with self._use():
            self._verified.pop(name, None)
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            folder = self._folder(name)
            if not folder.is_dir():
                return False
            shutil.rmtree(folder)
        log.info("vector collection dropped", collection=name, backend="edge")
        return True

    def stats(self, identity: ModelIdentity) -> dict[str, int]:
        """Points, indexed vectors and segments of the identity's shard."""
        with self._use():
            shard, _ = self._verify(identity)
            info = shard.info()
            return {
                "points": int(info.points_count),
                "indexed_vectors": int(info.indexed_vectors_count),
                "segments": int(info.segments_count),
            }

    # ---- aliases -----------------------------------------------------------------------
    # Qdrant Edge has no aliases (qdrant-edge-py 0.x: an EdgeShard is one shard; the
    # alias API lives in the server's collection layer). This store keeps the alias map
    # itself, in ``<root>/aliases.json`` (``{"schema": 1, "aliases": {alias: collection}}``),
    # rewritten atomically (temporary file + rename) under the store's lock, so that
    # :meth:`set_alias` switches an alias in one step like Qdrant's
    # ``update_collection_aliases`` (delete + create) and a crash leaves the old or the new
    # map, never neither. Same rules as Qdrant: an alias points at an existing
    # collection and cannot take a collection's name.
    def _read_aliases(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / ALIASES_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StorycueError(
                f"cannot read the alias map {self.root / ALIASES_FILE}: {exc}"
            ) from exc
        aliases = data.get("aliases") if isinstance(data, dict) else None
        if not isinstance(aliases, dict):
            return {}
        return {str(k): str(v) for k, v in aliases.items()}

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        _write_json_atomic(
            self.root / ALIASES_FILE,
            {"schema": METADATA_SCHEMA, "aliases": dict(sorted(aliases.items()))},
        )

    def set_alias(self, alias: str, identity: ModelIdentity) -> None:
        """Point ``alias`` at the identity's collection (one atomic rewrite of the map)."""
        check_alias_name(alias)
        with self._use():
            self._verify(identity)
            if self._folder(alias).is_dir():
                raise InvalidInputError(
                    f"{alias!r} is a collection; an alias cannot take its name",
                    detail={"alias": alias},
                )
            aliases = self._read_aliases()
            aliases[alias] = identity.collection_name
            self._write_aliases(aliases)
        log.info("vector alias set", alias=alias, collection=identity.collection_name)

    def resolve_alias(self, alias: str) -> ModelIdentity | None:
        """The identity recorded with the collection ``alias`` points at, or ``None``."""
        check_alias_name(alias)
        with self._use():
            target = self._read_aliases().get(alias)
            if target is None or not self._folder(target).is_dir():
                return None
            return _read_record(self._folder(target)).identity

    def delete_alias(self, alias: str) -> bool:
        """Delete ``alias`` (its collection stays); whether it existed."""
        check_alias_name(alias)
        with self._use():
            aliases = self._read_aliases()
            if aliases.pop(alias, None) is None:
                return False
            self._write_aliases(aliases)
        log.info("vector alias deleted", alias=alias)
        return True
