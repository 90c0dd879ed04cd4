"""Deterministic train/validation/test splits.

* :func:`split_fourq` — artist-disjoint split of 4Q clips, stratified by quadrant as far
  as the artist groups allow.
* :func:`stratified_split` — plain stratified split of labelled items (used for ISEAR).

Every split carries a :func:`fingerprint` of its id lists, so a checkpoint can record which
split it was trained on and an evaluation can refuse to mix them up.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from storycue.data._common import collapse_ws, fold_accents
from storycue.data.fourq import QUADRANTS, FourQRecord
from storycue.errors import InvalidInputError

T = TypeVar("T")

#: Names of the three parts, in order.
PARTS: tuple[str, str, str] = ("train", "validation", "test")
#: Default fractions of the three parts.
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.70, 0.15, 0.15)
#: Default seed of every split.
DEFAULT_SEED = 20211107

# "X & the Y", "X and His Orchestra", "X + 2": the leader and the band are both aliases.
_BAND = re.compile(r"\s+(?:&|and|\+)\s+(?:the|his|her)?\s*")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
# Band parts too generic to identify an artist on their own.
_GENERIC = frozenset({"orchestra", "band", "group", "trio", "quartet", "quintet", "friends"})


def fingerprint(parts: Mapping[str, Sequence[str]]) -> str:
    """Stable 16-hex-digit hash of named id lists (order inside each part ignored)."""
    canonical = json.dumps({k: sorted(v) for k, v in sorted(parts.items())}, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise InvalidInputError(
            f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}"
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def normalise_artist(name: str) -> str:
    """Canonical artist key: accents folded, lower-cased, leading "the" and punctuation dropped."""
    key = fold_accents(collapse_ws(name)).lower()
    key = re.sub(r"^the\s+", "", key)
    return _NON_ALNUM.sub(" ", key).strip()


def artist_aliases(name: str) -> tuple[str, ...]:
    """Keys under which an artist is grouped: the whole name plus leader and band parts.

    ``"Alvin & the Chipmunks"`` -> ``("alvin chipmunks", "alvin", "chipmunks")`` so that it
    joins ``"The Chipmunks"``; ``"Charlie Poole & the North Carolina Ramblers"`` joins
    ``"Charlie Poole"``.
    """
    full = normalise_artist(name)
    pieces = [normalise_artist(p) for p in _BAND.split(fold_accents(collapse_ws(name)).lower())]
    keys = [full, *(p for p in pieces if len(p) >= 3 and not p.isdigit() and p not in _GENERIC)]
    return tuple(dict.fromkeys(k for k in keys if k))


def artist_groups(records: Sequence[FourQRecord]) -> list[list[int]]:
    """Indices of ``records`` grouped so that clips sharing any artist alias share a group.

    Clips without an artist each form their own group. Groups come in order of their first
    record.
    """
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, rec in enumerate(records):
        for key in artist_aliases(rec.artist):
            if key in owner:
                a, b = find(owner[key]), find(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                owner[key] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(records)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


@dataclass(frozen=True, slots=True)
class FourQSplit:
    """An artist-disjoint train/validation/test split of 4Q records."""

    train: list[FourQRecord]
    validation: list[FourQRecord]
    test: list[FourQRecord]
    seed: int
    fractions: tuple[float, float, float]
    fingerprint: str

    def part(self, name: str) -> list[FourQRecord]:
        """One part by name: ``"train"``, ``"validation"`` (or ``"val"``/``"dev"``), ``"test"``."""
        key = {"val": "validation", "dev": "validation"}.get(name, name)
        if key not in PARTS:
            raise InvalidInputError(f"unknown split part {name!r}; expected one of {PARTS}")
        result: list[FourQRecord] = getattr(self, key)
        return result

    def ids(self) -> dict[str, list[str]]:
        """Song ids of each part, in the part's order."""
        return {p: [r.song_id for r in self.part(p)] for p in PARTS}

    def counts(self) -> dict[str, dict[str, int]]:
        """Clips per part and quadrant."""
        return {
            p: {q: sum(1 for r in self.part(p) if r.quadrant == q) for q in QUADRANTS}
            for p in PARTS
        }


def split_fourq(
    records: Sequence[FourQRecord],
    *,
    seed: int = DEFAULT_SEED,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> FourQSplit:
    """Split 4Q records into train/validation/test with no artist in two parts.

    Artist groups (see :func:`artist_groups`) are shuffled with ``seed``, ordered by size
    (largest first, stable), and each is given to the part whose per-quadrant counts then
    stay closest (squared error, relative to the part's size) to the target counts
    ``fractions x clips per quadrant``. The result depends only on the records (in any
    order), the seed and the fractions. Each part keeps the records in song-id order.
    """
    fr = _check_fractions(fractions)
    if not records:
        raise InvalidInputError("split_fourq needs at least one record")
    ids = [r.song_id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("split_fourq: song ids must be unique")
    recs = sorted(records, key=lambda r: r.song_id)
    q_index = {q: i for i, q in enumerate(QUADRANTS)}
    per_quadrant = np.bincount([q_index[r.quadrant] for r in recs], minlength=len(QUADRANTS))
    target = np.outer(np.asarray(fr), per_quadrant.astype(float))  # parts x quadrants
    weight = 1.0 / np.maximum(target.sum(axis=1, keepdims=True), 1.0)

    groups = artist_groups(recs)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    shuffled = [groups[i] for i in order]
    shuffled.sort(key=len, reverse=True)  # stable: ties keep the shuffled order

    assigned = np.zeros_like(target)
    owner = [0] * len(recs)
    for group in shuffled:
        counts = np.bincount(
            [q_index[recs[i].quadrant] for i in group], minlength=len(QUADRANTS)
        ).astype(float)
        best_part, best_cost = 0, float("inf")
        for p in range(len(PARTS)):
            trial = assigned.copy()
            trial[p] += counts
            cost = float((((trial - target) ** 2) * weight).sum())
            if cost < best_cost - 1e-12:
                best_part, best_cost = p, cost
        assigned[best_part] += counts
        for i in group:
            owner[i] = best_part

    parts = [[r for r, o in zip(recs, owner, strict=True) if o == p] for p in range(3)]
    fp = fingerprint(
        {name: [r.song_id for r in part] for name, part in zip(PARTS, parts, strict=True)}
    )
    return FourQSplit(
        train=parts[0], validation=parts[1], test=parts[2], seed=seed, fractions=fr, fingerprint=fp
    )


@dataclass(frozen=True, slots=True)
class Split(Generic[T]):
    """A generic three-part split with the fingerprint of its ids."""

    train: list[T]
    validation: list[T]
    test: list[T]
    seed: int
    fingerprint: str

    def part(self, name: str) -> list[T]:
        """One part by name (``"val"`` and ``"dev"`` mean ``"validation"``)."""
        key = {"val": "validation", "dev": "validation"}.get(name, name)
        if key not in PARTS:
            raise InvalidInputError(f"unknown split part {name!r}; expected one of {PARTS}")
        result: list[T] = getattr(self, key)
        return result


def stratified_split(
    items: Sequence[T],
    label: Callable[[T], Hashable],
    key: Callable[[T], str],
    *,
    seed: int = DEFAULT_SEED,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> Split[T]:
    """Stratified three-part split: within each label, items sorted by ``key`` are permuted
    with ``seed`` and cut at ``round(n x fraction)``; parts are returned in ``key`` order."""
    fr = _check_fractions(fractions)
    keys = [key(x) for x in items]
    if len(set(keys)) != len(keys):
        raise InvalidInputError("stratified_split: item keys must be unique")
    by_label: dict[Hashable, list[T]] = {}
    for x in sorted(items, key=key):
        by_label.setdefault(label(x), []).append(x)
    rng = np.random.default_rng(seed)
    out: list[list[T]] = [[], [], []]
    for lab in sorted(by_label, key=str):
        group = by_label[lab]
        perm = rng.permutation(len(group))
        n_train = round(len(group) * fr[0])
        n_val = round(len(group) * fr[1])
        cuts = (0, n_train, n_train + n_val, len(group))
        for p in range(3):
            out[p].extend(group[i] for i in perm[cuts[p] : cuts[p + 1]])
    for part in out:
        part.sort(key=key)
    fp = fingerprint({name: [key(x) for x in part] for name, part in zip(PARTS, out, strict=True)})
    return Split(train=out[0], validation=out[1], test=out[2], seed=seed, fingerprint=fp)


def label_counts(items: Sequence[T], label: Callable[[T], str]) -> dict[str, int]:
    """Items per label, sorted by label."""
    return dict(sorted(Counter(label(x) for x in items).items()))
