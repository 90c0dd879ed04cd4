"""Alm's fairy-tale affect dataset (Alm 2008): sentences of Grimm, H.C. Andersen and
B. Potter tales labelled with emotions. The data is not distributed with storycue.

Two file formats, one story per file, in a folder per author (the author is the first
folder under the root; layouts such as ``<root>/Potter/agree-sent/<story>.agree`` and
``<root>/Potter/emmood/<story>.emmood`` are both found, at any depth):

* **agree-sent** (``*.agree``): ``SentID@Code@Sentence`` per line, sentences on which the
  annotators agreed. Codes 2 = angry-disgusted, 3 = fearful, 4 = happy, 6 = sad,
  7 = surprised (the paper's five classes, :data:`AGREE_CODES`); other codes (neutral,
  ...) are skipped.
* **emmood** (``*.emmood``): ``SentID:SentID<TAB>1emA:1emB<TAB>MoodA:MoodB<TAB>Sentence``,
  the two annotators' primary emotions and moods. Emotion codes: ``A`` angry, ``D``
  disgusted, ``F`` fearful, ``H`` happy, ``Sa`` sad, ``Su+``/``Su-`` surprised, ``N``
  neutral (:data:`EMMOOD_CODES`). A sentence gets a label when both annotators' primary
  emotions map to the same class (angry and disgusted merge into angry-disgusted);
  otherwise it is skipped.

The paper evaluates on Potter's stories (:data:`POTTER`) and trains on the others:
``load_alm(root, split="test")`` / ``split="train"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storycue.data._common import collapse_ws
from storycue.errors import DatasetFormatError, DatasetNotFoundError, InvalidInputError
from storycue.log import get_logger

log = get_logger(__name__)

#: The paper's five Alm classes.
ALM_LABELS: tuple[str, ...] = ("angry-disgusted", "fearful", "happy", "sad", "surprised")
#: agree-sent emotion code -> class (other codes are skipped).
AGREE_CODES: dict[str, str] = {
    "2": "angry-disgusted",
    "3": "fearful",
    "4": "happy",
    "6": "sad",
    "7": "surprised",
}
#: emmood primary-emotion code -> class (``N`` neutral and unknown codes give no class).
EMMOOD_CODES: dict[str, str] = {
    "A": "angry-disgusted",
    "D": "angry-disgusted",
    "F": "fearful",
    "H": "happy",
    "Sa": "sad",
    "Su+": "surprised",
    "Su-": "surprised",
}
#: The author folder whose stories form the test set in the paper.
POTTER = "Potter"

AlmFormat = Literal["agree", "emmood", "auto"]
AlmSplit = Literal["train", "test", "all"]


@dataclass(frozen=True, slots=True)
class AlmRecord:
    """One labelled sentence of a tale."""

    author: str
    story: str
    sentence_id: str
    label: str
    text: str


def parse_agree_file(path: Path, author: str) -> list[AlmRecord]:
    """Labelled sentences of one ``*.agree`` file (``SentID@Code@Sentence``)."""
    records: list[AlmRecord] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("@", 2)
        if len(fields) != 3:
            raise DatasetFormatError(f"{path}:{line_no}: expected SentID@Code@Sentence")
        sent_id, code, text = (f.strip() for f in fields)
        label = AGREE_CODES.get(code)
        if label is not None and text:
            records.append(AlmRecord(author, path.stem, sent_id, label, collapse_ws(text)))
    return records


def parse_emmood_file(path: Path, author: str) -> list[AlmRecord]:
    """Sentences of one ``*.emmood`` file whose two annotators agree on a class."""
    records: list[AlmRecord] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t", 3)
        if len(fields) != 4:
            raise DatasetFormatError(
                f"{path}:{line_no}: expected SentID:SentID<TAB>1emA:1emB<TAB>MoodA:MoodB<TAB>Text"
            )
        ids, emotions, _moods, text = fields
        pair = emotions.split(":")
        if len(pair) != 2:
            raise DatasetFormatError(f"{path}:{line_no}: emotion field {emotions!r} is not A:B")
        a, b = (EMMOOD_CODES.get(e.strip()) for e in pair)
        if a is not None and a == b and text.strip():
            sent_id = ids.split(":")[0].strip()
            records.append(AlmRecord(author, path.stem, sent_id, a, collapse_ws(text)))
    return records


def load_alm(
    root: str | Path,
    *,
    split: AlmSplit = "all",
    fmt: AlmFormat = "auto",
    test_author: str = POTTER,
) -> list[AlmRecord]:
    """Labelled sentences under ``root`` (see the module docstring for layout and formats).

    ``fmt="auto"`` reads the ``*.agree`` files when there are any, else the ``*.emmood``
    ones. ``split="test"`` keeps ``test_author``'s stories (the paper's Potter split),
    ``"train"`` the others. Records come sorted by author, story and file order.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"Alm data folder {folder} does not exist")
    if split not in ("train", "test", "all"):
        raise InvalidInputError(f"unknown Alm split {split!r}")
    agree = sorted(folder.rglob("*.agree"))
    emmood = sorted(folder.rglob("*.emmood"))
    if fmt == "auto":
        fmt = "agree" if agree else "emmood"
    files = agree if fmt == "agree" else emmood
    if not files:
        raise DatasetNotFoundError(f"no *.{fmt} files under {folder}")
    records: list[AlmRecord] = []
    for file in files:
        rel = file.relative_to(folder)
        author = rel.parts[0] if len(rel.parts) > 1 else ""
        in_test = author.casefold() == test_author.casefold()
        if (split == "test" and not in_test) or (split == "train" and in_test):
            continue
        parse = parse_agree_file if fmt == "agree" else parse_emmood_file
        records.extend(parse(file, author))
    log.debug("alm_loaded", root=str(folder), fmt=fmt, split=split, records=len(records))
    return records
