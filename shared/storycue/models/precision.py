"""Mixed precision for the encoders' forward passes, accepted only after a probe check.

``Settings.precision`` (or a model's ``precision=`` argument) picks the autocast dtype of the
musicnn backbone's and the PyTorch text encoder's forward passes:

* ``"fp32"`` — never autocast.
* ``"auto"`` (default) — float16 autocast on CUDA, fp32 on every other device (no probe).
* ``"bf16"`` / ``"fp16"`` — that dtype on any device whose autocast supports it (CPU
  autocast supports bfloat16, which is what the tests use).

A reduced precision is never trusted blindly: on first use (lazily, under a lock, once per
model and device) a :class:`PrecisionGate` runs a fixed deterministic probe input through the
model in fp32 and in the reduced precision and compares the L2-normalised pooled outputs.
If their largest absolute difference exceeds :data:`PROBE_TOLERANCE` (or the reduced run
fails), the model falls back to fp32 and a warning with the measured difference is logged;
the decision is logged either way. Pooling, normalisation and the heads always run in float32
(the models cast their outputs back before pooling).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from storycue.log import get_logger

__all__ = [
    "PROBE_TOLERANCE",
    "Precision",
    "PrecisionDecision",
    "PrecisionGate",
    "autocast",
    "candidate_dtype",
]

log = get_logger(__name__)

Precision = Literal["fp32", "auto", "bf16", "fp16"]
#: ``"fp32"``: no reduced precision was asked for (or applies on this device);
#: ``"accepted"``: the probe passed, the model autocasts; ``"rejected"``: it failed, fp32.
PrecisionDecision = Literal["fp32", "accepted", "rejected"]

#: Largest allowed max-abs difference between the L2-normalised pooled outputs of the fp32
#: and the reduced-precision forward pass on the probe input. The vectors are unit length, so
#: this is an absolute bound per component; bf16 (8-bit mantissa) and fp16 (11-bit) typically
#: land at 1e-3..1e-2 there, while an overflow or a broken kernel gives differences of order
#: 0.1..1 or NaN. 2e-2 keeps cosine similarities within about 1e-2 of fp32's.
PROBE_TOLERANCE = 2e-2

_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def candidate_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The reduced dtype ``precision`` asks for on ``device`` (before the probe), or
    ``None`` for fp32. ``"auto"`` is float16 on CUDA only."""
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if precision in _DTYPES:
        return _DTYPES[precision]
    raise ValueError(f"unknown precision {precision!r}; use fp32, auto, bf16 or fp16")


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast(device.type, dtype)``, or a no-op context for ``dtype=None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class PrecisionGate:
    """Decides once, lazily and thread-safely, which dtype one model autocasts to.

    ``probe(dtype)`` must return the model's L2-normalised pooled output vector(s) for its
    fixed probe input, computed under ``autocast(device, dtype)`` (``None`` = fp32).
    """

    def __init__(self, precision: Precision, device: torch.device | str, *, model: str) -> None:
        self.precision: Precision = precision
        self.device = torch.device(device)
        self.model = model
        self.candidate = candidate_dtype(precision, self.device)
        self._lock = threading.Lock()
        self._resolved = False
        self._dtype: torch.dtype | None = None
        #: Set once resolved: see :data:`PrecisionDecision`.
        self.decision: PrecisionDecision | None = None
        #: Measured max-abs difference of the probe (``None`` when no probe ran).
        self.probe_diff: float | None = None

    def dtype(self, probe: Callable[[torch.dtype | None], Tensor]) -> torch.dtype | None:
        """The dtype to autocast to (``None`` = fp32), running the probe on the first call."""
        if self._resolved:
            return self._dtype
        with self._lock:
            if not self._resolved:
                self._dtype = self._decide(probe)
                self._resolved = True
            return self._dtype

    def _decide(self, probe: Callable[[torch.dtype | None], Tensor]) -> torch.dtype | None:
        cand = self.candidate
        fields: dict[str, Any] = {
            "model": self.model, "device": str(self.device), "precision": self.precision,
        }  # fmt: skip
        if cand is None:
            self.decision = "fp32"
            log.info("precision_decided", decision="fp32", dtype="float32", **fields)
            return None
        tolerance = PROBE_TOLERANCE  # read at call time (tests monkeypatch it)
        t0 = time.perf_counter()
        with torch.inference_mode():
            ref = probe(None).float()
            try:
                low = probe(cand).float()
                diff = float((ref - low).abs().max())
            except RuntimeError as exc:  # e.g. no autocast kernels for this dtype/device
                log.warning("precision_probe_failed", error=str(exc), **fields)
                diff = math.inf
        self.probe_diff = diff
        seconds = round(time.perf_counter() - t0, 3)
        dtype_name = str(cand).removeprefix("torch.")
        if math.isfinite(diff) and diff <= tolerance:
            self.decision = "accepted"
            log.info(
                "precision_decided", decision="accepted", dtype=dtype_name, max_abs_diff=diff,
                tolerance=tolerance, probe_seconds=seconds, **fields,
            )  # fmt: skip
            return cand
        self.decision = "rejected"
        log.warning(
            "precision_rejected: reduced-precision outputs outside tolerance, using fp32",
            decision="rejected", dtype=dtype_name, max_abs_diff=diff, tolerance=tolerance,
            probe_seconds=seconds, **fields,
        )  # fmt: skip
        return None
