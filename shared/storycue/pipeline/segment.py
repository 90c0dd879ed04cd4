"""Split a story of any length into scenes that fit the text encoder.

Scenes follow the author's paragraphs. A paragraph longer than the encoder's token limit is
cut into windows of whole sentences; a sentence longer than the limit is cut between
words. Very short paragraphs (a line of dialogue) are merged with their neighbours so a
scene carries enough text to have an emotion. Every segment keeps its character span in
the original text, and the segments cover every non-blank character: nothing is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storycue.errors import InvalidInputError

TokenCounter = Callable[[Sequence[str]], list[int]]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# A sentence ends at . ! ? or … (optionally followed by closing quotes/brackets), then space.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class Segment:
    """One scene: its index, character span ``[start, end)`` and text."""

    index: int
    start: int
    end: int
    text: str
    tokens: int


def _spans(pattern: re.Pattern[str], text: str, base: int) -> list[tuple[int, int]]:
    """Split ``text`` at ``pattern`` into stripped, non-empty spans (absolute offsets)."""
    out: list[tuple[int, int]] = []
    pos = 0
    for m in pattern.finditer(text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    spans: list[tuple[int, int]] = []
    for s, e in out:
        piece = text[s:e]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece) - len(piece.rstrip())
        if e - trail > s + lead:
            spans.append((base + s + lead, base + e - trail))
    return spans


def segment_story(
    text: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    *,
    min_tokens: int = 24,
    target_tokens: int | None = None,
) -> list[Segment]:
    """Cut ``text`` into :class:`Segment` s of at most ``max_tokens`` tokens each.

    ``count_tokens`` counts tokens the way the encoder will (special tokens included).
    ``target_tokens`` (default ``max_tokens``) caps the size of the sentence windows that
    long paragraphs are cut into; ``min_tokens`` is the size under which a paragraph is
    merged with the next one when the two still fit. Packing estimates the length of joined
    pieces by adding their counts; every final segment is then counted exactly and re-cut
    in the rare case the estimate was short.
    """
    if not isinstance(text, str):
        raise InvalidInputError("story text must be a string")
    if not text.strip():
        raise InvalidInputError("story text is empty or only whitespace")
    if max_tokens < 8:
        raise InvalidInputError(f"max_tokens={max_tokens} is too small to hold a segment")
    target = min(target_tokens or max_tokens, max_tokens)
    packer = _Packer(text, count_tokens)

    # 1. Paragraphs; those over the limit become windows of sentences.
    units: list[tuple[int, int]] = []
    unit_counts: list[int] = []
    paragraphs = _spans(_PARAGRAPH_BREAK, text, 0)
    for span, n in zip(paragraphs, packer.count(paragraphs), strict=True):
        if n <= target:
            units.append(span)
            unit_counts.append(n)
        else:
            windows = packer.windows(span, target)
            units.extend(windows)
            unit_counts.extend(packer.count(windows))

    # 2. Merge short units into their neighbour while the result fits.
    merged: list[tuple[int, int]] = []
    merged_counts: list[int] = []
    for span, n in zip(units, unit_counts, strict=True):
        if merged and (merged_counts[-1] < min_tokens or n < min_tokens):
            joined = merged_counts[-1] + n - packer.special
            if joined <= target:
                merged[-1] = (merged[-1][0], span[1])
                merged_counts[-1] = joined
                continue
        merged.append(span)
        merged_counts.append(n)

    # 3. Exact counts; re-cut any segment the additive estimate got wrong.
    final: list[tuple[int, int]] = []
    final_counts: list[int] = []
    for span, n in zip(merged, packer.count(merged), strict=True):
        if n <= max_tokens:
            final.append(span)
            final_counts.append(n)
        else:
            for sub, m in packer.split_exact(span, max_tokens):
                final.append(sub)
                final_counts.append(m)
    return [
        Segment(index=i, start=s, end=e, text=text[s:e], tokens=n)
        for i, ((s, e), n) in enumerate(zip(final, final_counts, strict=True))
    ]


class _Packer:
    """Token-aware packing of character spans of one text."""

    def __init__(self, text: str, count_tokens: TokenCounter) -> None:
        self.text = text
        self._count = count_tokens
        (self.special,) = count_tokens([""])  # special tokens added to every segment

    def count(self, spans: Sequence[tuple[int, int]]) -> list[int]:
        return self._count([self.text[s:e] for s, e in spans]) if spans else []

    def windows(self, span: tuple[int, int], limit: int) -> list[tuple[int, int]]:
        """Greedy windows of whole sentences (or words, for giant sentences)."""
        pieces, counts = self._atoms(span, limit)
        return self._greedy(pieces, counts, limit)

    def _atoms(self, span: tuple[int, int], limit: int) -> tuple[list[tuple[int, int]], list[int]]:
        """Sentences of ``span``; words of a sentence over ``limit``; characters of a word
        over ``limit``. Each atom's exact count is at most ``limit``."""
        pieces: list[tuple[int, int]] = []
        counts: list[int] = []
        sentences = _spans(_SENTENCE_END, self.text[span[0] : span[1]], span[0])
        for s, n in zip(sentences, self.count(sentences), strict=True):
            if n <= limit:
                pieces.append(s)
                counts.append(n)
                continue
            words = [
                (s[0] + m.start(), s[0] + m.end()) for m in _WORD.finditer(self.text[s[0] : s[1]])
            ]
            for w, k in zip(words, self.count(words), strict=True):
                if k <= limit:
                    pieces.append(w)
                    counts.append(k)
                    continue
                # One "word" over the limit (a run of junk): cut by characters.
                step = max(1, (w[1] - w[0]) * (limit - self.special) // (2 * k))
                chars = [(i, min(i + step, w[1])) for i in range(w[0], w[1], step)]
                pieces.extend(chars)
                counts.extend(self.count(chars))
        return pieces, counts

    def _greedy(
        self, pieces: list[tuple[int, int]], counts: list[int], limit: int
    ) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        cur: tuple[int, int] | None = None
        cur_n = 0
        for piece, n in zip(pieces, counts, strict=True):
            if cur is not None and cur_n + n - self.special <= limit:
                cur = (cur[0], piece[1])
                cur_n += n - self.special
                continue
            if cur is not None:
                out.append(cur)
            cur, cur_n = piece, n
        if cur is not None:
            out.append(cur)
        return [_strip(self.text, s) for s in out if self.text[s[0] : s[1]].strip()]

    def split_exact(self, span: tuple[int, int], limit: int) -> list[tuple[tuple[int, int], int]]:
        """Cut ``span`` with exact counts: each window is the longest run of atoms that
        fits, found by binary search (used only where the additive estimate failed)."""
        atoms, _ = self._atoms(span, limit)
        out: list[tuple[tuple[int, int], int]] = []
        i = 0
        while i < len(atoms):
            lo, hi = i, len(atoms) - 1  # atoms[i] alone always fits
            best = (atoms[i][0], atoms[i][1])
            (best_n,) = self.count([best])
            while lo < hi:
                mid = (lo + hi + 1) // 2
                cand = _strip(self.text, (atoms[i][0], atoms[mid][1]))
                (n,) = self.count([cand])
                if n <= limit:
                    lo, best, best_n = mid, cand, n
                else:
                    hi = mid - 1
            if best_n > limit:  # pragma: no cover - atoms are counted on construction
                raise InvalidInputError("text could not be segmented within the token limit")
            out.append((best, best_n))
            i = lo + 1
        return out


def _strip(text: str, span: tuple[int, int]) -> tuple[int, int]:
    s, e = span
    piece = text[s:e]
    return s + len(piece) - len(piece.lstrip()), e - (len(piece) - len(piece.rstrip()))
