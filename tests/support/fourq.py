"""Real 4Q clips for the tests that run the whole stack on them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


def distinct_clips(root: Path, n: int) -> list[Path]:
    """``n`` 4Q clips of distinct content (sha256), taken from Q1..Q4 in turn; skips the
    test when ``root`` holds fewer."""
    quadrants = [sorted((root / q).glob("*.mp3")) for q in ("Q1", "Q2", "Q3", "Q4")]
    seen: set[str] = set()
    out: list[Path] = []
    for i in range(max((len(q) for q in quadrants), default=0)):
        for q in quadrants:
            if i < len(q) and len(out) < n:
                digest = hashlib.sha256(q[i].read_bytes()).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    out.append(q[i])
    if len(out) < n:
        pytest.skip(f"only {len(out)} distinct 4Q clips under {root}, {n} needed")
    return out
