"""The :class:`~storycue.storage.vectors.VectorStore` on Qdrant.

The same class serves Qdrant's embedded local mode (a folder, or in memory) and a Qdrant
server (by URL); only the client construction differs. The model identity and distance
are recorded in the collection's metadata when storycue creates it, and checked before
every write and search.

Local mode locks its folder: one client per folder per process. Use
:func:`storycue.storage.open_vector_store`, which caches one store per folder.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self, cast

from qdrant_client import QdrantClient
from qdrant_client import models as qm

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

#: Key of storycue's entry in a collection's metadata.
METADATA_KEY = "storycue"
#: Version of the metadata entry's layout.
METADATA_SCHEMA = 1
_UPSERT_BATCH = 256


def _hits(points: Sequence[qm.ScoredPoint], distance: Distance) -> list[VectorHit]:
    return [
        VectorHit(
            id=str(p.id), score=float(p.score), payload=dict(p.payload or {}), distance=distance
        )
        for p in points
    ]


_TO_QDRANT: dict[Distance, qm.Distance] = {
    "cosine": qm.Distance.COSINE,
    "euclid": qm.Distance.EUCLID,
    "dot": qm.Distance.DOT,
}
_FROM_QDRANT: dict[qm.Distance, Distance] = {v: k for k, v in _TO_QDRANT.items()}

_PAYLOAD_INDEXES: dict[str, qm.PayloadSchemaType] = {
    PAYLOAD_TRACK_ID: qm.PayloadSchemaType.INTEGER,
    PAYLOAD_CATALOGUE_ID: qm.PayloadSchemaType.INTEGER,
    PAYLOAD_DURATION_S: qm.PayloadSchemaType.FLOAT,
    PAYLOAD_TAGS: qm.PayloadSchemaType.KEYWORD,
}


def build_filter(flt: SearchFilter | None) -> qm.Filter | None:
    """The Qdrant filter of a :class:`SearchFilter` (``None`` when it has no condition)."""
    if flt is None or flt.is_empty:
        return None
    must: list[qm.Condition] = []
    if flt.catalogue_ids is not None:
        must.append(
            qm.FieldCondition(
                key=PAYLOAD_CATALOGUE_ID, match=qm.MatchAny(any=[int(c) for c in flt.catalogue_ids])
            )
        )
    if flt.min_duration_s is not None or flt.max_duration_s is not None:
        must.append(
            qm.FieldCondition(
                key=PAYLOAD_DURATION_S,
                range=qm.Range(gte=flt.min_duration_s, lte=flt.max_duration_s),
            )
        )
    if flt.tags_any is not None:
        must.append(
            qm.FieldCondition(
                key=PAYLOAD_TAGS, match=qm.MatchAny(any=[str(t) for t in flt.tags_any])
            )
        )
    return qm.Filter(must=must)


def _is_already_exists(exc: Exception) -> bool:
    text = str(exc).lower()
    return "already exists" in text or "409" in text


class QdrantVectorStore(CheckedVectorStore):
    """Vectors in Qdrant: local folder, in-memory, or a server.

    Give exactly one of ``url`` (server; ``api_key`` optional), ``path`` (local mode on
    disk) or ``in_memory=True`` (local mode, gone on close). Thread-safe: calls on a
    local-mode client are serialised.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: str | Path | None = None,
        in_memory: bool = False,
        timeout_s: int = 30,
    ) -> None:
        if sum([url is not None, path is not None, in_memory]) != 1:
            raise ConfigurationError(
                "QdrantVectorStore needs exactly one of url=, path= or in_memory=True"
            )
        self._local = url is None
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._local else contextlib.nullcontext()
        )
        self._verified: dict[str, tuple[ModelIdentity, Distance]] = {}
        self._closed = False
        if url is not None:
            self.location = url
            self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout_s)
        elif path is not None:
            folder = Path(path).expanduser().resolve()
            self.location = str(folder)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(folder))
            except (RuntimeError, OSError) as exc:
                raise ConfigurationError(
                    f"cannot open the local Qdrant folder {folder}: {exc} (local mode allows "
                    "one client per folder; share the store from open_vector_store, or "
                    "run a Qdrant server and set STORYCUE_QDRANT_URL)",
                    detail={"path": str(folder)},
                ) from exc
        else:
            self.location = ":memory:"
            self._client = QdrantClient(location=":memory:")
        log.debug("vector store opened", location=self.location, local=self._local)

    # ---- construction sugar ------------------------------------------------------------
    @classmethod
    def local(cls, path: str | Path) -> QdrantVectorStore:
        """Local mode in ``path`` (created when missing)."""
        return cls(path=path)

    @classmethod
    def memory(cls) -> QdrantVectorStore:
        """Local mode in memory (for tests and throw-away work)."""
        return cls(in_memory=True)

    @classmethod
    def server(cls, url: str, api_key: str | None = None) -> QdrantVectorStore:
        """A Qdrant server at ``url``."""
        return cls(url=url, api_key=api_key)

    @property
    def is_local(self) -> bool:
        """Whether this is embedded local mode."""
        return self._local

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the client and release a local folder's lock (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._verified.clear()
            self._client.close()
        log.debug("vector store closed", location=self.location)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _use(self) -> Iterator[QdrantClient]:
        with self._lock:
            if self._closed:
                raise ConfigurationError(f"the vector store at {self.location} is closed")
            yield self._client

    # ---- identity bookkeeping ----------------------------------------------------------
    @staticmethod
    def _describe(
        info: qm.CollectionInfo,
    ) -> tuple[ModelIdentity | None, Distance | None, int | None]:
        vectors = info.config.params.vectors
        dim: int | None = None
        qdist: qm.Distance | None = None
        if isinstance(vectors, qm.VectorParams):
            dim, qdist = vectors.size, vectors.distance
        meta = (info.config.metadata or {}).get(METADATA_KEY)
        identity: ModelIdentity | None = None
        distance: Distance | None = None
        if isinstance(meta, dict):
            try:
                identity = ModelIdentity(
                    name=meta["model_name"], version=meta["model_version"], dim=meta["dim"]
                )
            except (KeyError, ValueError, TypeError):
                identity = None
            if meta.get("distance") in DISTANCES:
                distance = cast(Distance, meta["distance"])
        if distance is None and qdist is not None:
            distance = _FROM_QDRANT.get(qdist)
        return identity, distance, dim

    def _verify(self, client: QdrantClient, identity: ModelIdentity) -> Distance:
        """Check the identity's collection exists and belongs to it; its distance."""
        name = identity.collection_name
        cached = self._verified.get(name)
        if cached is not None:
            identity.require_same(cached[0], what=f"collection {name}")
            return cached[1]
        if not client.collection_exists(name):
            raise NotFoundError(
                f"no vector collection for model {identity.key}: call ensure_collection first",
                detail={"collection": name, "model": identity.key},
            )
        recorded, distance, dim = self._describe(client.get_collection(name))
        if recorded is None or distance is None:
            raise ModelMismatchError(
                f"collection {name} was not created by storycue (no model identity recorded)",
                detail={"collection": name, "model": identity.key},
            )
        identity.require_same(recorded, what=f"collection {name}")
        if dim != identity.dim:
            raise ModelMismatchError(
                f"collection {name} stores {dim}-d vectors, model {identity.key} makes "
                f"{identity.dim}-d ones",
                detail={"collection": name, "dim": dim, "expected_dim": identity.dim},
            )
        self._verified[name] = (recorded, distance)
        return distance

    # ---- VectorStore -------------------------------------------------------------------
    def _create_or_verify(self, identity: ModelIdentity, distance: Distance) -> Distance:
        name = identity.collection_name
        with self._use() as client:
            if not client.collection_exists(name):
                meta = {
                    METADATA_KEY: {
                        "schema": METADATA_SCHEMA,
                        "model_name": identity.name,
                        "model_version": identity.version,
                        "dim": identity.dim,
                        "distance": distance,
                    }
                }
                try:
                    client.create_collection(
                        name,
                        vectors_config=qm.VectorParams(
                            size=identity.dim, distance=_TO_QDRANT[distance]
                        ),
                        metadata=meta,
                    )
                    created = True
                except Exception as exc:  # a concurrent creator won: verify theirs below
                    if not _is_already_exists(exc):
                        raise StorycueError(
                            f"cannot create vector collection {name}: {exc}",
                            detail={"collection": name},
                        ) from exc
                    created = False
                if created:
                    self._create_payload_indexes(client, name)
                    log.info(
                        "vector collection created",
                        collection=name,
                        model=identity.key,
                        distance=distance,
                    )
            return self._verify(client, identity)

    def _create_payload_indexes(self, client: QdrantClient, name: str) -> None:
        # Local mode ignores payload indexes (and warns); a server uses them for filters.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for field_name, schema in _PAYLOAD_INDEXES.items():
                client.create_payload_index(name, field_name=field_name, field_schema=schema)

    def upsert(self, identity: ModelIdentity, points: Sequence[VectorPoint]) -> None:
        """Insert or replace ``points``; every vector must have ``identity.dim`` values."""
        structs = [
            qm.PointStruct(
                id=normalize_point_id(p.id),
                vector=as_vector(p.vector, identity.dim),
                payload=dict(p.payload),
            )
            for p in points
        ]
        with self._use() as client:
            self._verify(client, identity)
            for i in range(0, len(structs), _UPSERT_BATCH):
                client.upsert(
                    identity.collection_name, points=structs[i : i + _UPSERT_BATCH], wait=True
                )

    def _search(
        self, identity: ModelIdentity, query: list[float], top_k: int, flt: SearchFilter | None
    ) -> list[VectorHit]:
        with self._use() as client:
            distance = self._verify(client, identity)
            response = client.query_points(
                identity.collection_name,
                query=query,
                limit=top_k,
                query_filter=build_filter(flt),
                with_payload=True,
                with_vectors=False,
            )
        return _hits(response.points, distance)

    def _search_batch(
        self,
        identity: ModelIdentity,
        queries: list[list[float]],
        top_k: int,
        flt: SearchFilter | None,
    ) -> list[list[VectorHit]]:
        # One query_batch_points call: one round trip to a server.
        query_filter = build_filter(flt)
        requests = [
            qm.QueryRequest(
                query=q, filter=query_filter, limit=top_k, with_payload=True, with_vector=False
            )
            for q in queries
        ]
        with self._use() as client:
            distance = self._verify(client, identity)
            responses = client.query_batch_points(identity.collection_name, requests=requests)
        return [_hits(response.points, distance) for response in responses]

    def delete(self, identity: ModelIdentity, ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids are ignored."""
        wanted = [normalize_point_id(i) for i in ids]
        with self._use() as client:
            self._verify(client, identity)
            if wanted:
                client.delete(
                    identity.collection_name,
                    points_selector=qm.PointIdsList(points=list(wanted)),
                    wait=True,
                )

    def count(self, identity: ModelIdentity, flt: SearchFilter | None = None) -> int:
        """Exact number of points matching ``flt`` (all points when ``None``)."""
        with self._use() as client:
            self._verify(client, identity)
            result = client.count(
                identity.collection_name, count_filter=build_filter(flt), exact=True
            )
        return int(result.count)

    def retrieve(self, identity: ModelIdentity, ids: Sequence[str]) -> list[StoredVector]:
        """Points by id with vectors and payloads, in the order asked; unknown skipped."""
        wanted = [normalize_point_id(i) for i in ids]
        with self._use() as client:
            self._verify(client, identity)
            records = (
                client.retrieve(
                    identity.collection_name, ids=list(wanted), with_payload=True, with_vectors=True
                )
                if wanted
                else []
            )
        return stored_vectors(identity, [(r.id, r.vector, r.payload) for r in records], wanted)

    def collections(self) -> list[CollectionInfo]:
        """Every collection, with the identity storycue recorded (``None`` if foreign)."""
        with self._use() as client:
            names = sorted(c.name for c in client.get_collections().collections)
            out = []
            for name in names:
                identity, distance, dim = self._describe(client.get_collection(name))
                out.append(CollectionInfo(name=name, identity=identity, distance=distance, dim=dim))
        return out

    def drop_collection(self, identity: ModelIdentity) -> bool:
        """Delete the identity's collection and all its vectors; whether it existed."""
        name = identity.collection_name
        with self._use() as client:
            self._verified.pop(name, None)
            if not client.collection_exists(name):
                return False
            client.delete_collection(name)
        log.info("vector collection dropped", collection=name)
        return True

    # ---- aliases -----------------------------------------------------------------------
    @staticmethod
    def _aliases(client: QdrantClient) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}

    def set_alias(self, alias: str, identity: ModelIdentity) -> None:
        """Point ``alias`` at the identity's collection: one ``update_collection_aliases``
        call deleting the old alias (when there is one) and creating the new, so readers
        of the alias never see it missing (server and local mode alike)."""
        check_alias_name(alias)
        with self._use() as client:
            self._verify(client, identity)
            if client.collection_exists(alias) and alias not in self._aliases(client):
                raise InvalidInputError(
                    f"{alias!r} is a collection; an alias cannot take its name",
                    detail={"alias": alias},
                )
            ops: list[qm.AliasOperations] = []
            if alias in self._aliases(client):
                ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
            ops.append(
                qm.CreateAliasOperation(
                    create_alias=qm.CreateAlias(
                        collection_name=identity.collection_name, alias_name=alias
                    )
                )
            )
            client.update_collection_aliases(change_aliases_operations=ops)
        log.info("vector alias set", alias=alias, collection=identity.collection_name)

    def resolve_alias(self, alias: str) -> ModelIdentity | None:
        """The identity recorded with the collection ``alias`` points at, or ``None``."""
        check_alias_name(alias)
        with self._use() as client:
            target = self._aliases(client).get(alias)
            if target is None or not client.collection_exists(target):
                return None
            identity, _distance, _dim = self._describe(client.get_collection(target))
        return identity

    def delete_alias(self, alias: str) -> bool:
        """Delete ``alias`` (its collection stays); whether it existed."""
        check_alias_name(alias)
        with self._use() as client:
            if alias not in self._aliases(client):
                return False
            client.update_collection_aliases(
                change_aliases_operations=[
                    qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))
                ]
            )
        log.info("vector alias deleted", alias=alias)
        return True
