from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from storycue.data.fourq import QUADRANTS, FourQRecord, load_fourq
from storycue.data.splits import (
    PARTS,
    artist_aliases,
    artist_groups,
    fingerprint,
    normalise_artist,
    split_fourq,
    stratified_split,
)
from storycue.errors import InvalidInputError


def _rec(i: int, artist: str, quadrant: str) -> FourQRecord:
    return FourQRecord(
        song_id=f"S{i:04d}",
        artist=artist,
        title="",
        quadrant=quadrant,
        moods=(),
        genres=(),
        audio_path=Path(f"S{i:04d}.mp3"),
    )


def _synthetic(n_artists: int = 120) -> list[FourQRecord]:
    recs: list[FourQRecord] = []
    i = 0
    for a in range(n_artists):
        size = 1 + (a % 4 == 0) * (a % 7)  # some artists have several clips
        for k in range(size):
            recs.append(_rec(i, f"Artist {a}", QUADRANTS[(a + k) % 4]))
            i += 1
    return recs


def test_normalise_artist_and_aliases() -> None:
    assert normalise_artist("  The  Beach Boys ") == "beach boys"
    assert normalise_artist("Einstürzende Neubauten") == "einsturzende neubauten"
    assert set(artist_aliases("Alvin & the Chipmunks")) >= {"alvin", "chipmunks"}
    assert "eddie heywood" in artist_aliases("Eddie Heywood and His Orchestra")
    assert "2" not in artist_aliases("The Sir Douglas Quintet + 2")


def test_artist_groups_merge_aliases() -> None:
    recs = [
        _rec(0, "Alvin & the Chipmunks", "Q1"),
        _rec(1, "The Chipmunks", "Q1"),
        _rec(2, "Charlie Poole", "Q3"),
        _rec(3, "Charlie Poole & the North Carolina Ramblers", "Q3"),
        _rec(4, "BILLIE HOLIDAY", "Q4"),
        _rec(5, "Billie  Holiday", "Q3"),
        _rec(6, "Someone Else", "Q2"),
    ]
    assert artist_groups(recs) == [[0, 1], [2, 3], [4, 5], [6]]


def test_split_fourq_synthetic_properties() -> None:
    recs = _synthetic()
    split = split_fourq(recs, seed=3)
    ids = split.ids()
    assert sorted(sid for sids in ids.values() for sid in sids) == sorted(r.song_id for r in recs)
    part_of = {sid: p for p, sids in ids.items() for sid in sids}
    artists: dict[str, set[str]] = {}
    for r in recs:
        artists.setdefault(r.artist, set()).add(part_of[r.song_id])
    assert all(len(parts) == 1 for parts in artists.values())
    sizes = [len(split.part(p)) for p in PARTS]
    assert sizes[0] > sizes[1] > 0 and sizes[2] > 0
    assert abs(sizes[0] / len(recs) - 0.70) < 0.05


def test_split_fourq_deterministic_and_order_free() -> None:
    recs = _synthetic()
    a = split_fourq(recs, seed=1)
    b = split_fourq(list(reversed(recs)), seed=1)
    c = split_fourq(recs, seed=2)
    assert a.ids() == b.ids()
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 16


def test_split_fourq_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="fractions"):
        split_fourq(_synthetic(), fractions=(0.5, 0.5, 0.5))
    with pytest.raises(InvalidInputError, match="unique"):
        split_fourq([_rec(0, "a", "Q1"), _rec(0, "b", "Q2")])
    with pytest.raises(InvalidInputError):
        split_fourq([])
    with pytest.raises(InvalidInputError, match="unknown split part"):
        split_fourq(_synthetic()).part("holdout")


def test_fingerprint_ignores_order_within_parts() -> None:
    assert fingerprint({"train": ["a", "b"], "test": ["c"]}) == fingerprint(
        {"test": ["c"], "train": ["b", "a"]}
    )
    assert fingerprint({"train": ["a"], "test": ["b"]}) != fingerprint(
        {"train": ["b"], "test": ["a"]}
    )


def test_stratified_split_counts() -> None:
    items = [(f"id{i:03d}", "a" if i < 100 else "b") for i in range(140)]
    split = stratified_split(items, label=lambda x: x[1], key=lambda x: x[0], seed=0)
    counts = {p: Counter(x[1] for x in split.part(p)) for p in PARTS}
    assert counts["train"] == {"a": 70, "b": 28}
    assert counts["validation"] == {"a": 15, "b": 6}
    assert counts["test"] == {"a": 15, "b": 6}
    again = stratified_split(items, label=lambda x: x[1], key=lambda x: x[0], seed=0)
    assert again.fingerprint == split.fingerprint
    assert split.part("dev") == split.validation


@pytest.mark.data
def test_split_fourq_real(data_dir: Path) -> None:
    records = load_fourq(data_dir / "4q")
    split = split_fourq(records)
    assert split.fingerprint == split_fourq(records).fingerprint
    groups = artist_groups(sorted(records, key=lambda r: r.song_id))
    ordered = sorted(records, key=lambda r: r.song_id)
    part_of = {sid: p for p, sids in split.ids().items() for sid in sids}
    for group in groups:
        assert len({part_of[ordered[i].song_id] for i in group}) == 1
    # Plain normalised names never cross parts either (clips without an artist excepted).
    names: dict[str, set[str]] = {}
    for r in records:
        if normalise_artist(r.artist):
            names.setdefault(normalise_artist(r.artist), set()).add(part_of[r.song_id])
    assert all(len(p) == 1 for p in names.values())
    counts = split.counts()
    for p, frac in zip(PARTS, split.fractions, strict=True):
        total = sum(counts[p].values())
        assert abs(total / len(records) - frac) < 0.02
        for q in QUADRANTS:
            assert abs(counts[p][q] / total - 0.25) < 0.03
