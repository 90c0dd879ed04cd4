"""Model identity: name, version and embedding dimension travel with every artefact (and
the content digest of the files they come from).

A checkpoint, a vector collection and a search result each carry a :class:`ModelIdentity`
so that vectors of one model never silently mix with those of another.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from storycue.errors import ModelMismatchError


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content (a checkpoint's, an exported model's, a clip's),
    read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_SAFE = re.compile(r"[^a-z0-9]+")


class ModelIdentity(BaseModel):
    """Who produced a vector: model name, version and output dimension."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=100)
    version: str = Field(min_length=1, max_length=40)
    dim: int = Field(gt=0, le=65536)

    @property
    def key(self) -> str:
        """Stable string form, e.g. ``va-regression@1.0.0/2``."""
        return f"{self.name}@{self.version}/{self.dim}"

    @property
    def collection_name(self) -> str:
        """Vector collection name: one collection per name + version + dimension."""
        name = _SAFE.sub("-", self.name.lower()).strip("-")
        version = _SAFE.sub("-", self.version.lower()).strip("-")
        return f"storycue__{name}__v{version}__d{self.dim}"

    def require_same(self, other: ModelIdentity, what: str = "vectors") -> None:
        """Raise :class:`ModelMismatchError` unless ``other`` is this identity."""
        if other != self:
            raise ModelMismatchError(
                f"{what} were produced by {other.key}, expected {self.key}",
                detail={"expected": self.key, "got": other.key},
            )
