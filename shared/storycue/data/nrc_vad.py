"""The NRC Valence-Arousal-Dominance lexicon (Mohammad 2018), v1: 20,007 English terms.

File: ``nrc-vad/NRC-VAD-Lexicon.txt`` (path from ``Settings.resolved_nrc_vad_path``),
tab-separated ``word, valence, arousal, dominance`` with scores in [0, 1]; the v1 file
starts with a ``Word  Valence  Arousal  Dominance`` header, which is detected and skipped.
A few entries are multi-word (``"apple juice"``).

The licence allows non-commercial research use and forbids redistribution: the lexicon is
always read from the user's copy, never shipped or copied into the repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from storycue.config import Settings, get_settings
from storycue.data._common import collapse_ws, require_file
from storycue.errors import DatasetFormatError
from storycue.log import get_logger

log = get_logger(__name__)

_PART_SEP = re.compile(r"[/;,|&+]|\band\b|\bor\b")
_WORD_SEP = re.compile(r"[\s\-_]+")
#: Shortest piece tried when splitting a closed compound ("bittersweet" -> bitter + sweet).
MIN_COMPOUND_PIECE = 3


class VAD(NamedTuple):
    """Valence, arousal and dominance, each in [0, 1] (0.5 = neutral)."""

    valence: float
    arousal: float
    dominance: float


@dataclass(frozen=True, slots=True)
class LexiconCoverage:
    """Which of a set of words/phrases the lexicon can place."""

    total: int
    covered: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def fraction(self) -> float:
        """Share of the words covered (0 for no words)."""
        return len(self.covered) / self.total if self.total else 0.0


def _mean(values: list[VAD]) -> VAD:
    n = len(values)
    return VAD(
        sum(v.valence for v in values) / n,
        sum(v.arousal for v in values) / n,
        sum(v.dominance for v in values) / n,
    )


class VadLexicon:
    """Word -> :class:`VAD` look-ups, tolerant of case, hyphens, slashes and compounds."""

    def __init__(self, entries: Mapping[str, VAD]) -> None:
        self._entries = {collapse_ws(k).lower(): v for k, v in entries.items()}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.lookup(word) is not None

    def items(self) -> list[tuple[str, VAD]]:
        """Every entry, (lower-cased word, scores), in the lexicon's own order."""
        return list(self._entries.items())

    @classmethod
    def from_file(cls, path: str | Path) -> VadLexicon:
        """Read a lexicon file (tab-separated word, valence, arousal, dominance)."""
        file = require_file(Path(path), "nrc-vad")
        entries: dict[str, VAD] = {}
        with file.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                fields = line.rstrip("\n").split("\t")
                if len(fields) != 4:
                    raise DatasetFormatError(f"{file}:{line_no}: expected 4 tab-separated fields")
                try:
                    vad = VAD(float(fields[1]), float(fields[2]), float(fields[3]))
                except ValueError as exc:
                    if line_no == 1:  # header: "Word Valence Arousal Dominance"
                        continue
                    raise DatasetFormatError(f"{file}:{line_no}: non-numeric score") from exc
                if not all(0.0 <= x <= 1.0 for x in vad):
                    raise DatasetFormatError(f"{file}:{line_no}: score outside [0, 1]")
                entries[fields[0]] = vad
        if not entries:
            raise DatasetFormatError(f"{file}: no entries")
        log.debug("nrc_vad_loaded", path=str(file), entries=len(entries))
        return cls(entries)

    def lookup(self, word: str) -> VAD | None:
        """Scores of one word (case-insensitive; ``"laid-back"`` also tried as
        ``"laid back"`` and ``"laidback"``), or ``None``."""
        key = collapse_ws(word).lower()
        for candidate in (key, _WORD_SEP.sub(" ", key).strip(), _WORD_SEP.sub("", key)):
            if candidate and candidate in self._entries:
                return self._entries[candidate]
        return None

    def _split_compound(self, word: str) -> list[VAD] | None:
        for i in range(MIN_COMPOUND_PIECE, len(word) - MIN_COMPOUND_PIECE + 1):
            head, tail = self._entries.get(word[:i]), self._entries.get(word[i:])
            if head is not None and tail is not None:
                return [head, tail]
        return None

    def _part(self, part: str) -> list[VAD]:
        whole = self.lookup(part)
        if whole is not None:
            return [whole]
        found: list[VAD] = []
        for word in (w for w in _WORD_SEP.split(part) if w):
            vad = self.lookup(word)
            if vad is not None:
                found.append(vad)
            elif (pieces := self._split_compound(word)) is not None:
                found.extend(pieces)
        return found

    def lookup_phrase(self, text: str) -> VAD | None:
        """Mean scores over the known parts of a tag or phrase, or ``None``.

        Alternatives separated by ``/ ; , & +`` or "and"/"or" (``"nervous/jittery"``) are
        looked up separately; each part is tried whole (``"laid-back"``), then word by
        word, and a closed compound missing from the lexicon is split into two known words
        (``"bittersweet"`` -> bitter, sweet). Returns the mean over everything found.
        """
        key = collapse_ws(text).lower()
        if not key:
            return None
        whole = self.lookup(key)
        if whole is not None:
            return whole
        found: list[VAD] = []
        for part in (p.strip() for p in _PART_SEP.split(key)):
            if part:
                found.extend(self._part(part))
        return _mean(found) if found else None

    def coverage(self, words: Iterable[str]) -> LexiconCoverage:
        """Which distinct ``words`` (phrases allowed) :meth:`lookup_phrase` can place."""
        distinct = list(dict.fromkeys(words))
        covered = tuple(w for w in distinct if self.lookup_phrase(w) is not None)
        missing = tuple(w for w in distinct if self.lookup_phrase(w) is None)
        return LexiconCoverage(total=len(distinct), covered=covered, missing=missing)


def load_nrc_vad(path: str | Path | None = None, *, settings: Settings | None = None) -> VadLexicon:
    """The NRC VAD lexicon from ``path`` or ``Settings.resolved_nrc_vad_path``."""
    return VadLexicon.from_file(
        path if path is not None else (settings or get_settings()).resolved_nrc_vad_path
    )
