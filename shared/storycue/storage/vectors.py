"""The vector-store interface: points, hits, filters and deterministic point ids.

One collection per :class:`~storycue.identity.ModelIdentity` (name + version + dim).
Implementations check on every write and search that vectors have the identity's
dimension and that the collection was created for that identity, raising
:class:`~storycue.errors.ModelMismatchError` otherwise.

Scores
------
:attr:`VectorHit.score` is the backend's raw score and hits are always ordered best
first. For ``cosine`` it is the cosine similarity (vectors are L2-normalised on write,
so :meth:`VectorStore.retrieve` returns unit vectors), for ``dot`` the dot product: both
higher is better. For ``euclid`` Qdrant reports the Euclidean *distance*, lower is
better. :attr:`VectorHit.similarity` is always higher-is-better (the negated distance
for ``euclid``), so callers comparing scores across distances should use it.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from storycue.errors import InvalidInputError, ModelMismatchError, StorycueError
from storycue.identity import ModelIdentity
from storycue.storage.records import DISTANCES, Distance, Track

#: Namespace of :func:`point_id_for` (fixed forever: changing it orphans every vector).
POINT_NAMESPACE = uuid.UUID("6f1d2c0e-8a55-5b7e-9c1a-53746f727963")

#: Payload keys the standard filters and payload indexes use.
PAYLOAD_TRACK_ID = "track_id"
PAYLOAD_CATALOGUE_ID = "catalogue_id"
PAYLOAD_DURATION_S = "duration_s"
PAYLOAD_TAGS = "tags"

VectorLike = Sequence[float] | npt.NDArray[np.floating[Any]]


def point_id_for(track_id: int | str) -> str:
    """The deterministic vector point id (a UUID string) of a track.

    The same track always maps to the same point, so re-upserting replaces rather than
    duplicates. Collections are per model, so the id need not include the model.
    """
    return str(uuid.uuid5(POINT_NAMESPACE, f"{track_id}"))


def normalize_point_id(point_id: str | uuid.UUID) -> str:
    """Canonical UUID string form of ``point_id``, or :class:`InvalidInputError`."""
    try:
        return str(point_id if isinstance(point_id, uuid.UUID) else uuid.UUID(str(point_id)))
    except ValueError as exc:
        raise InvalidInputError(
            f"vector point ids must be UUID strings, got {point_id!r}",
            detail={"point_id": str(point_id)},
        ) from exc


_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


def check_alias_name(alias: str) -> str:
    """A valid alias name (1 to 200 letters, digits, ``_``, ``.``, ``-``; starts with a
    letter or digit, so it is also a safe file name), or :class:`InvalidInputError`."""
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidInputError(
            f"invalid vector alias name {alias!r}", detail={"field": "alias", "alias": str(alias)}
        )
    return alias


def as_vector(vector: VectorLike, dim: int | None = None) -> list[float]:
    """A finite 1-D vector as a list of floats, checked against ``dim`` when given.

    Raises :class:`InvalidInputError` for non-1-D or non-finite input; a length other
    than ``dim`` raises :class:`~storycue.errors.ModelMismatchError`.
    """
    from storycue.errors import ModelMismatchError

    arr = np.asarray(vector, dtype=np.float64)
    if arr.ndim != 1:
        raise InvalidInputError(f"a vector must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError("vector holds NaN or infinite values")
    if dim is not None and arr.shape[0] != dim:
        raise ModelMismatchError(
            f"vector has dimension {arr.shape[0]}, the model expects {dim}",
            detail={"expected_dim": dim, "got_dim": int(arr.shape[0])},
        )
    return [float(x) for x in arr]


#: Largest ``top_k`` a search answers.
MAX_TOP_K = 10_000


def check_distance(distance: str) -> None:
    """:class:`InvalidInputError` unless ``distance`` is one a collection can use."""
    if distance not in DISTANCES:
        raise InvalidInputError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")


def check_top_k(top_k: int) -> None:
    """:class:`InvalidInputError` unless ``1 <= top_k <= MAX_TOP_K``."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInputError(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")


def check_same_distance(identity: ModelIdentity, existing: Distance, asked: Distance) -> None:
    """:class:`ModelMismatchError` when a collection uses another distance than asked."""
    if existing != asked:
        name = identity.collection_name
        raise ModelMismatchError(
            f"collection {name} uses {existing} distance, asked for {asked}",
            detail={"collection": name, "distance": existing, "asked": asked},
        )


@dataclass(frozen=True, slots=True)
class VectorPoint:
    """One vector to store: a UUID id (see :func:`point_id_for`), the vector, a payload.

    Put ``track_id``, ``catalogue_id``, ``duration_s`` and ``tags`` in the payload to
    make :class:`SearchFilter` work.
    """

    id: str
    vector: VectorLike
    payload: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def for_track(cls, track: Track, vector: VectorLike, **extra: Any) -> VectorPoint:
        """The point of ``track``: id :func:`point_id_for` and the standard payload
        (``track_id``, ``catalogue_id``, ``duration_s``, ``tags``) plus ``extra``."""
        return cls(id=point_id_for(track.id), vector=vector, payload=track_payload(track, **extra))


def track_payload(track: Track, **extra: Any) -> dict[str, Any]:
    """The standard payload of a track's vector, which :class:`SearchFilter` filters on."""
    return {
        PAYLOAD_TRACK_ID: track.id,
        PAYLOAD_CATALOGUE_ID: track.catalogue_id,
        PAYLOAD_DURATION_S: track.duration_s,
        PAYLOAD_TAGS: list(track.tags),
        **extra,
    }


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One search result, best first. See the module doc for ``score`` semantics."""

    id: str
    score: float
    payload: dict[str, Any]
    distance: Distance = "cosine"

    @property
    def similarity(self) -> float:
        """Higher-is-better score: ``score`` for cosine/dot, ``-score`` for euclid."""
        return -self.score if self.distance == "euclid" else self.score


@dataclass(frozen=True, slots=True)
class StoredVector:
    """A point read back by id."""

    id: str
    vector: list[float]
    payload: dict[str, Any]


def stored_vectors(
    identity: ModelIdentity,
    records: Sequence[tuple[Any, Any, Mapping[str, Any] | None]],
    wanted: Sequence[str],
) -> list[StoredVector]:
    """``(id, vector, payload)`` records a backend retrieved, as :class:`StoredVector` in
    the order of ``wanted`` (ids not found are skipped); a vector that is not one list of
    numbers is a :class:`StorycueError`."""
    found: dict[str, StoredVector] = {}
    for rid, vec, payload in records:
        if not isinstance(vec, list) or (vec and not isinstance(vec[0], int | float)):
            raise StorycueError(f"unexpected vector layout in {identity.collection_name}")
        found[str(rid)] = StoredVector(
            id=str(rid), vector=[float(x) for x in vec], payload=dict(payload or {})
        )
    return [found[i] for i in wanted if i in found]


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Payload conditions, all of which must hold (``None`` = no condition).

    ``catalogue_ids``: the point's ``catalogue_id`` is any of these. ``min_duration_s`` /
    ``max_duration_s``: inclusive bounds on ``duration_s``. ``tags_any``: the point's
    ``tags`` list shares at least one tag with these. Empty sequences are rejected (they
    would match nothing; pass ``None`` for "no condition").
    """

    catalogue_ids: Sequence[int] | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    tags_any: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.catalogue_ids is not None:
            if len(self.catalogue_ids) == 0:
                raise InvalidInputError("catalogue_ids must not be empty (use None)")
            object.__setattr__(self, "catalogue_ids", tuple(int(c) for c in self.catalogue_ids))
        if self.tags_any is not None:
            if isinstance(self.tags_any, str) or len(self.tags_any) == 0:
                raise InvalidInputError("tags_any must be a non-empty sequence of tags")
            object.__setattr__(self, "tags_any", tuple(str(t) for t in self.tags_any))
        for name in ("min_duration_s", "max_duration_s"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(float(value)):
                raise InvalidInputError(f"{name} must be finite, got {value!r}")
        if (
            self.min_duration_s is not None
            and self.max_duration_s is not None
            and self.min_duration_s > self.max_duration_s
        ):
            raise InvalidInputError(
                f"min_duration_s {self.min_duration_s} > max_duration_s {self.max_duration_s}"
            )

    @property
    def is_empty(self) -> bool:
        """Whether no condition is set."""
        return (
            self.catalogue_ids is None
            and self.min_duration_s is None
            and self.max_duration_s is None
            and self.tags_any is None
        )


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """A collection of the vector store and the identity recorded with it.

    ``identity`` and ``distance`` are ``None`` for a collection storycue did not create.
    """

    name: str
    identity: ModelIdentity | None
    distance: Distance | None
    dim: int | None


@runtime_checkable
class VectorStore(Protocol):
    """Where vectors live: one collection per model identity.

    Aliases are stable names for a collection (storycue keeps one per catalogue, see
    :func:`storycue.jobs.switch.catalogue_alias`, pointing at the collection of the
    catalogue's active model) so that readers of the store need not know model versions.
    An alias name must be a valid collection name and not that of a collection.
    """

    def ensure_collection(self, identity: ModelIdentity, distance: Distance) -> None:
        """Create the identity's collection, or check that the existing one matches."""
        ...

    def upsert(self, identity: ModelIdentity, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points (same id = same point)."""
        ...

    def search(
        self,
        identity: ModelIdentity,
        vector: VectorLike,
        top_k: int,
        flt: SearchFilter | None = None,
    ) -> list[VectorHit]:
        """The ``top_k`` nearest points, best first."""
        ...

    def search_batch(
        self,
        identity: ModelIdentity,
        vectors: Sequence[VectorLike] | npt.NDArray[np.floating[Any]],
        top_k: int,
        flt: SearchFilter | None = None,
    ) -> list[list[VectorHit]]:
        """:meth:`search` for each of ``vectors`` with one filter, in one call: the hits of
        each, in order (what a bulk chunk of stories needs; one request per query costs
        the backend about three times as much)."""
        ...

    def delete(self, identity: ModelIdentity, ids: Sequence[str]) -> None:
        """Delete points by id (unknown ids are ignored)."""
        ...

    def count(self, identity: ModelIdentity, flt: SearchFilter | None = None) -> int:
        """Number of points (matching ``flt``)."""
        ...

    def retrieve(self, identity: ModelIdentity, ids: Sequence[str]) -> list[StoredVector]:
        """Points by id, in the order asked; unknown ids are skipped."""
        ...

    def collections(self) -> list[CollectionInfo]:
        """Every collection of the store."""
        ...

    def set_alias(self, alias: str, identity: ModelIdentity) -> None:
        """Point ``alias`` at the identity's collection (which must exist), replacing
        whatever it pointed at in one atomic operation."""
        ...

    def resolve_alias(self, alias: str) -> ModelIdentity | None:
        """The identity of the collection ``alias`` points at (``None``: no such alias,
        or a collection storycue did not create)."""
        ...

    def delete_alias(self, alias: str) -> bool:
        """Delete ``alias`` (not its collection); whether it existed."""
        ...

    def close(self) -> None:
        """Release the client (idempotent)."""
        ...


class CheckedVectorStore:
    """The checks every backend makes before it touches its store: a collection's distance
    (and that an existing collection uses the one asked for), ``top_k`` and the query
    vector's length. A backend implements :meth:`_create_or_verify` and :meth:`_search`
    (and :meth:`_search_batch` where it has a batch API)."""

    #: Queries per :meth:`_search_batch` call of :meth:`search_batch`: a backend holds its
    #: lock (Qdrant Edge: about 15 ms at 10k points) or a server round trip for one batch,
    #: so a search of another thread waits at most that long behind a bulk chunk's searches.
    query_batch: int = 64

    def ensure_collection(self, identity: ModelIdentity, distance: Distance) -> None:
        """Create ``identity``'s collection, or check the existing one.

        Raises :class:`ModelMismatchError` when the collection exists for another
        identity (two names that sanitise to one collection name) or distance.
        """
        check_distance(distance)
        check_same_distance(identity, self._create_or_verify(identity, distance), distance)

    def search(
        self,
        identity: ModelIdentity,
        vector: VectorLike,
        top_k: int,
        flt: SearchFilter | None = None,
    ) -> list[VectorHit]:
        """The ``top_k`` nearest points matching ``flt``, best first."""
        check_top_k(top_k)
        return self._search(identity, as_vector(vector, identity.dim), top_k, flt)

    def search_batch(
        self,
        identity: ModelIdentity,
        vectors: Sequence[VectorLike] | npt.NDArray[np.floating[Any]],
        top_k: int,
        flt: SearchFilter | None = None,
    ) -> list[list[VectorHit]]:
        """The ``top_k`` nearest points matching ``flt`` of each vector, best first, in the
        order of ``vectors`` (every vector is checked before any is searched)."""
        check_top_k(top_k)
        queries = [as_vector(v, identity.dim) for v in vectors]
        if len(queries) <= 1:  # a one-scene search (the gateway's usual) stays one query
            return [self._search(identity, q, top_k, flt) for q in queries]
        out: list[list[VectorHit]] = []
        for start in range(0, len(queries), self.query_batch):
            out.extend(
                self._search_batch(identity, queries[start : start + self.query_batch], top_k, flt)
            )
        return out

    def _create_or_verify(self, identity: ModelIdentity, distance: Distance) -> Distance:
        """Create the collection when it is missing; the distance it uses."""
        raise NotImplementedError

    def _search_batch(
        self,
        identity: ModelIdentity,
        queries: list[list[float]],
        top_k: int,
        flt: SearchFilter | None,
    ) -> list[list[VectorHit]]:
        """The nearest points to each of at most :attr:`query_batch` checked queries (a
        backend with a batch API overrides this with one call; the default searches one
        query at a time)."""
        return [self._search(identity, q, top_k, flt) for q in queries]

    def _search(
        self, identity: ModelIdentity, query: list[float], top_k: int, flt: SearchFilter | None
    ) -> list[VectorHit]:
        """The nearest points to a checked ``query``."""
        raise NotImplementedError
