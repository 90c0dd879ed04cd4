"""Word spaces: where labels and mood tags live for the word-based families.

A word space embeds short phrases (emotion labels such as ``"anger"``, AllMusic mood tags
such as ``"nervous/jittery"``) into unit vectors:

* :class:`EncoderWordSpace` (the default) uses the frozen text encoder itself, so a
  multi-word tag is simply encoded as text;
* :class:`FileWordSpace` reads pre-trained word vectors from a word2vec/GloVe text file
  (``word f1 f2 ...`` a line, an optional ``"<count> <dim>"`` header); a phrase is the mean
  of the vectors of its tokens (split on anything but letters, digits and apostrophes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from storycue.errors import DatasetFormatError, DatasetNotFoundError, InvalidInputError
from storycue.log import get_logger

log = get_logger(__name__)

_TOKEN = re.compile(r"[a-z0-9']+")


class WordSpace(Protocol):
    """Anything that embeds phrases into L2-normalised vectors ``(N, dim)``."""

    @property
    def name(self) -> str:
        """A stable description recorded in checkpoints (e.g. the encoder or file)."""
        ...

    def embed(self, phrases: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``phrases``, one row each."""
        ...


def tokens(phrase: str) -> list[str]:
    """Lower-cased word tokens of a phrase: ``"Nervous/Jittery"`` -> ``["nervous", "jittery"]``."""
    return _TOKEN.findall(phrase.lower())


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InvalidInputError("a word vector has zero norm")
    out: np.ndarray = (x / norms).astype(np.float32)
    return out


def load_word_vectors(path: Path, words: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Read a word2vec/GloVe text file: ``word f1 f2 ...`` per line.

    A first line of exactly two integers (word2vec's ``"<count> <dim>"`` header) is
    skipped. With ``words`` only those words (lower-cased) are kept, so large files stream
    through without being held in memory. Words are lower-cased; the first occurrence of a
    word wins. Raises :class:`DatasetNotFoundError` for a missing file and
    :class:`DatasetFormatError` for rows of inconsistent dimension or non-numeric values.
    """
    if not path.is_file():
        raise DatasetNotFoundError(f"word-vector file {path} does not exist")
    wanted = None if words is None else {w.lower() for w in words}
    vectors: dict[str, np.ndarray] = {}
    dim: int | None = None
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if not parts or parts == [""]:
                continue
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue
            if len(parts) < 2:
                raise DatasetFormatError(f"{path}:{line_no}: expected a word and its values")
            if dim is None:
                dim = len(parts) - 1
            elif len(parts) - 1 != dim:
                raise DatasetFormatError(
                    f"{path}:{line_no}: {len(parts) - 1} values, earlier rows have {dim}"
                )
            word = parts[0].lower()
            if (wanted is not None and word not in wanted) or word in vectors:
                continue
            try:
                vectors[word] = np.asarray([float(v) for v in parts[1:]], dtype=np.float32)
            except ValueError as exc:
                raise DatasetFormatError(f"{path}:{line_no}: non-numeric value") from exc
    if dim is None:
        raise DatasetFormatError(f"{path}: no word vectors")
    log.debug("word_vectors_loaded", path=str(path), words=len(vectors), dim=dim)
    return vectors


class FileWordSpace:
    """Phrases as the mean of their tokens' pre-trained word vectors (see the module doc)."""

    def __init__(self, path: Path, vectors: dict[str, np.ndarray] | None = None) -> None:
        self.path = Path(path)
        self._vectors = vectors

    @property
    def name(self) -> str:
        return f"file:{self.path.name}"

    def embed(self, phrases: Sequence[str]) -> np.ndarray:
        toks = [tokens(p) for p in phrases]
        if self._vectors is None:
            self._vectors = load_word_vectors(self.path, {t for ts in toks for t in ts})
        rows: list[np.ndarray] = []
        missing: list[str] = []
        for phrase, ts in zip(phrases, toks, strict=True):
            found = [self._vectors[t] for t in ts if t in self._vectors]
            if not found:
                missing.append(phrase)
                continue
            rows.append(np.mean(found, axis=0))
        if missing:
            raise InvalidInputError(
                f"word vectors of {self.path} cover no token of {missing[:10]}"
                + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
            )
        if not rows:
            return np.zeros((0, 0), np.float32)
        return _unit_rows(np.stack(rows))


class EncoderWordSpace:
    """Phrases embedded by the frozen text encoder (``encoder.encode``), L2-normalised."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    @property
    def name(self) -> str:
        return f"encoder:{self.encoder.name}"

    def embed(self, phrases: Sequence[str]) -> np.ndarray:
        if not phrases:
            return np.zeros((0, 0), np.float32)
        feats = np.asarray(self.encoder.encode(list(phrases)), dtype=np.float32)
        return _unit_rows(feats)
