"""Helpers shared by the dataset loaders: locating folders and reading delimited files."""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from storycue.config import Settings, get_settings
from storycue.errors import DatasetFormatError, DatasetNotFoundError

_WS = re.compile(r"\s+")


def resolve_dataset_dir(name: str, path: str | Path | None, settings: Settings | None) -> Path:
    """The folder of dataset ``name``: ``path`` when given, else ``settings.dataset_dir(name)``."""
    if path is not None:
        folder = Path(path)
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"dataset {name!r}: folder {folder} does not exist",
                detail={"dataset": name, "path": str(folder)},
            )
        return folder
    return (settings or get_settings()).dataset_dir(name)


def require_file(path: Path, dataset: str) -> Path:
    """``path`` when it is a file, else :class:`DatasetNotFoundError` naming the dataset."""
    if not path.is_file():
        raise DatasetNotFoundError(
            f"dataset {dataset!r}: expected file {path} is missing",
            detail={"dataset": dataset, "path": str(path)},
        )
    return path


def read_rows(
    path: Path, required: Sequence[str], *, dataset: str, delimiter: str = ","
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` of a delimited file with a header holding ``required``."""
    require_file(path, dataset)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise DatasetFormatError(
                    f"{path}: missing column(s) {missing}; found {list(header)}",
                    detail={"dataset": dataset, "path": str(path), "missing": missing},
                )
            for row in reader:
                yield reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({exc})") from exc
    except csv.Error as exc:
        raise DatasetFormatError(f"{path}: malformed delimited file ({exc})") from exc


def collapse_ws(text: str) -> str:
    """``text`` with runs of whitespace collapsed to one space and the ends stripped."""
    return _WS.sub(" ", text).strip()


def split_list(value: str, sep: str = ";") -> tuple[str, ...]:
    """Split ``"A; B; C"`` into ``("a", "b", "c")``: stripped, lower-cased, empties dropped."""
    return tuple(p for p in (collapse_ws(x).lower() for x in value.split(sep)) if p)


def fold_accents(text: str) -> str:
    """``text`` without combining accents (``"Einstürzende"`` -> ``"Einsturzende"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def unique(items: Iterable[str]) -> tuple[str, ...]:
    """Items in first-seen order without repeats."""
    return tuple(dict.fromkeys(items))
