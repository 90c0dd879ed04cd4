"""The text encoder on ONNX Runtime: exported once from the PyTorch model, cached, reused.

Selected by ``Settings.text_backend = "onnx"`` (``STORYCUE_TEXT_BACKEND=onnx``): the
:class:`~storycue.models.text.TextEncoder` then loads an :class:`OnnxTextModel` in place of
the PyTorch module. Everything around the forward pass is shared code: tokenisation, the
token-limit check, length-sorted batching, padding, pooling and L2 normalisation, so the
two backends differ only in the transformer's arithmetic (max abs difference about 1e-6 on
normalised MiniLM embeddings; ``tests/models/test_text_onnx.py`` holds them to 1e-5). The
emotion model's identity therefore does not change with the backend.

The export (``torch.onnx.export``, TorchScript tracer, dynamic batch and sequence axes)
runs on first use and is written atomically into
``<STORYCUE_HOME>/cache/onnx/<encoder>-<key>/model.onnx``. The key hashes the encoder's
identity (its name, ``config.json`` and weight files, or its weights when loaded from a
hub id), the transformers and torch versions, the opset and this module's export format,
so a changed model or library gets a fresh export and a stale one is never used. A fresh
export is checked against the PyTorch model on a padded probe batch before it is kept.

ONNX Runtime here is the CPU build: on a CUDA device the encoder keeps PyTorch (see
:class:`~storycue.models.text.TextEncoder`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from storycue.errors import ConfigurationError, InvalidInputError
from storycue.identity import file_sha256
from storycue.log import get_logger

log = get_logger(__name__)

#: ONNX opset of the export.
ONNX_OPSET = 17
#: Version of this module's export recipe (part of the cache key).
EXPORT_FORMAT = 1
#: Largest difference tolerated between a fresh export and PyTorch on the probe batch
#: (hidden states, before pooling; normalised embeddings agree far more closely).
PROBE_TOLERANCE = 1e-3
MODEL_FILE = "model.onnx"
META_FILE = "export.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_PROBE_TEXTS = (
    "The storm broke over the harbour.",
    "She laughed, and for a moment the whole grey town seemed lighter than it had in years.",
    "Silence.",
)


@dataclass(frozen=True)
class OnnxOutput:
    """What :class:`OnnxTextModel` returns: the transformer's last hidden state."""

    last_hidden_state: torch.Tensor


class OnnxTextModel:
    """An ONNX Runtime session that answers like a Hugging Face encoder module.

    ``model(input_ids=..., attention_mask=..., token_type_ids=...)`` returns an object whose
    ``last_hidden_state`` is a float32 CPU tensor, as the PyTorch model does, so the text
    encoder's pooling code serves both backends. ``config`` is the model's
    ``transformers`` configuration (hidden size, position limit).
    """

    def __init__(
        self, path: Path, config: Any, input_names: list[str], *, threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads if threads else torch.get_num_threads()
        options.inter_op_num_threads = 1
        # ONNX Runtime's pool threads spin for a while after each run by default; the text
        # head (PyTorch) runs right after in the same process and then waits for the cores
        # they hold: on 2 cores a 256-wide GELU took ~5 ms instead of microseconds
        # (bench/results/search-onnx-profile-*.txt). Not spinning costs nothing measurable.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ConfigurationError(f"cannot load the ONNX text encoder {path}: {exc}") from exc
        self.path = path
        self.config = config
        self.input_names = list(input_names)
        self.threads = options.intra_op_num_threads

    def __call__(self, **inputs: torch.Tensor) -> OnnxOutput:
        if "input_ids" not in inputs:
            raise InvalidInputError("the ONNX text encoder needs input_ids")
        ids = inputs["input_ids"].detach().cpu().numpy().astype(np.int64)
        feed: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name in inputs:
                feed[name] = inputs[name].detach().cpu().numpy().astype(np.int64)
            elif name == "token_type_ids":  # as the PyTorch model does: one segment, zeros
                feed[name] = np.zeros_like(ids)
            elif name == "attention_mask":
                feed[name] = np.ones_like(ids)
            else:  # pragma: no cover - input_names only holds the three above
                raise InvalidInputError(f"the ONNX text encoder needs {name}")
        (hidden,) = self.session.run(["last_hidden_state"], feed)
        return OnnxOutput(last_hidden_state=torch.from_numpy(np.ascontiguousarray(hidden)))


class _HiddenStates(torch.nn.Module):
    """The encoder with positional inputs in ``names`` order, returning the hidden state."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, args, strict=True)))
        hidden: torch.Tensor = out.last_hidden_state
        return hidden


def _files_identity(folder: Path) -> dict[str, str] | None:
    """Hashes of a local model folder's config and weights (``None`` without weights)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not files or not (folder / "config.json").is_file():
        return None
    return {p.name: file_sha256(p) for p in [folder / "config.json", *files]}


def _state_identity(model: torch.nn.Module) -> dict[str, str]:
    """Hash of a loaded model's parameters and buffers (for hub ids)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return {"state_dict": h.hexdigest()}


def export_key(name: str, identity: dict[str, str], input_names: list[str]) -> str:
    """The cache key of an export: model identity + library versions + recipe."""
    import transformers

    blob = json.dumps(
        {
            "name": name,
            "identity": identity,
            "inputs": input_names,
            "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "opset": ONNX_OPSET,
            "format": EXPORT_FORMAT,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-")


def export_onnx(
    model: torch.nn.Module, tokenizer: Any, input_names: list[str], target: Path
) -> None:
    """Export ``model`` to ``target`` atomically and check it against PyTorch on a probe."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    model = model.eval().to("cpu")
    probe = tokenizer(list(_PROBE_TEXTS), padding=True, return_tensors="pt")
    args = tuple(probe[n] for n in input_names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*input_names, "last_hidden_state"]}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            # The wrapper must be in eval mode too: the exporter restores the training flag
            # of the module it was given, recursively, after tracing.
            torch.onnx.export(
                _HiddenStates(model, input_names).eval(),
                args,
                str(tmp),
                input_names=input_names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        model.eval()
        check = OnnxTextModel(tmp, None, input_names, threads=1)
        got = check(**{n: probe[n] for n in input_names}).last_hidden_state
        with torch.no_grad():
            want = model(**{n: probe[n] for n in input_names}).last_hidden_state
        mask = probe["attention_mask"].bool()
        diff = float((got - want)[mask].abs().max())
        del check
        if not diff <= PROBE_TOLERANCE:
            raise ConfigurationError(
                f"the ONNX export differs from PyTorch by {diff:.2e} (> {PROBE_TOLERANCE:g}); "
                "use text_backend='torch' for this encoder",
                detail={"max_abs_diff": diff},
            )
        os.replace(tmp, target)
    except ConfigurationError:
        raise
    except Exception as exc:  # torch.onnx raises many types
        raise ConfigurationError(f"exporting the text encoder to ONNX failed: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    log.info("text encoder exported to onnx", path=str(target), probe_max_abs_diff=diff)


def load_onnx_text_model(
    name: str,
    source: str,
    tokenizer: Any,
    load_torch: Callable[[], torch.nn.Module],
    *,
    cache_dir: Path,
    threads: int | None = None,
) -> OnnxTextModel:
    """The ONNX model of encoder ``name`` (loaded from ``source``), exporting it when the
    cache has no export for this identity and these library versions.

    ``load_torch`` loads the PyTorch model; it is only called when needed (a hub id, whose
    identity is its weights, or a missing export).
    """
    from transformers import AutoConfig

    input_names = [n for n in tokenizer.model_input_names if n in _KNOWN_INPUTS]
    if "input_ids" not in input_names or "attention_mask" not in input_names:
        raise ConfigurationError(
            f"text encoder {name} takes inputs {tokenizer.model_input_names}; the ONNX path "
            "needs input_ids and attention_mask"
        )
    folder = Path(source)
    torch_model: torch.nn.Module | None = None
    identity = _files_identity(folder) if folder.is_dir() else None
    if identity is None:
        torch_model = load_torch()
        identity = _state_identity(torch_model)
    key = export_key(name, identity, input_names)
    target = cache_dir / f"{_safe(name)}-{key}" / MODEL_FILE
    if not target.is_file():
        if torch_model is None:
            torch_model = load_torch()
        log.info("exporting text encoder to onnx (first use)", encoder=name, path=str(target))
        export_onnx(torch_model, tokenizer, input_names, target)
        import transformers

        meta = {
            "encoder": name,
            "source": source,
            "identity": identity,
            "inputs": input_names,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "opset": ONNX_OPSET,
            "format": EXPORT_FORMAT,
        }
        meta_tmp = target.with_name(f".{META_FILE}.{uuid.uuid4().hex}.tmp")
        try:  # a record for people; the export itself is already in place
            meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(meta_tmp, target.with_name(META_FILE))
        except OSError as exc:
            log.warning("cannot write the onnx export record", path=str(meta_tmp), error=str(exc))
    # transformers' typing of configs differs between releases: read them untyped.
    config = (
        cast(Any, torch_model).config
        if torch_model is not None
        else cast(Any, AutoConfig).from_pretrained(source, local_files_only=folder.is_dir())
    )
    del torch_model
    return OnnxTextModel(target, config, input_names, threads=threads)


_KNOWN_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
