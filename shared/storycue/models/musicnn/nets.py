"""PyTorch ports of the musicnn networks (Pons & Serra, musicnn 0.1.0, ISC licence).

Two architectures, each trained on MagnaTagATune (MTT) and the Million Song Dataset (MSD):

* :class:`MusicnnNet` — musically motivated front end (timbral filters 7×38 and 7×67 over
  time×frequency, temporal filters 128/64/32×1, each max-pooled over frequency: 561
  channels), mid end of three 7-tap 1-D convolutions with residual connections (3×64),
  back end pooling the 753 concatenated channels over time (max and mean, interleaved per
  channel → 1,506 values), batch norm, dense 200 + ReLU + batch norm ("penultimate"),
  dense 50 (tag logits).
* :class:`VggNet` — five 3×3 conv blocks of 128 filters with max pooling; the last pooling
  ("pool5", 2×1×128 in NHWC) is flattened into a dense 50 layer.

Written from the TensorFlow model definitions, not translated line by line. Faithfulness
details: batch-norm epsilon 1e-3 everywhere; TensorFlow's "same" padding puts the extra
pad at the end (the 128/64/32-tap temporal filters pad 63/64, 31/32, 15/16 frames); dense
layers see features in TensorFlow's NHWC flattening order. Inputs are ``[B, 187, 96]``
log-mel patches (time, mel) — musicnn also accepts other patch lengths; VGG needs 187.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from storycue.errors import ModelMismatchError

__all__ = ["BN_EPS", "MusicnnNet", "VggNet"]

BN_EPS = 1e-3


def _bn1d(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=BN_EPS)


def _bn2d(n: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(n, eps=BN_EPS)


class _TfLoader:
    """Copies TensorFlow variables into torch parameters, checking names and shapes."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.used: set[str] = set()

    def get(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise ModelMismatchError(
                f"checkpoint lacks variable {name!r}; it is not a musicnn 0.1.0 checkpoint "
                "of this architecture"
            )
        self.used.add(name)
        return self.weights[name]

    def copy(self, param: Tensor, name: str, transform: Callable[[Tensor], Tensor]) -> None:
        value = transform(torch.from_numpy(np.asarray(self.get(name), dtype=np.float32)))
        if tuple(value.shape) != tuple(param.shape):
            raise ModelMismatchError(
                f"checkpoint variable {name!r} has shape {tuple(value.shape)} after "
                f"conversion, the network expects {tuple(param.shape)}"
            )
        with torch.no_grad():
            param.copy_(value)

    def bn(self, module: nn.Module, scope: str) -> None:
        assert isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d)
        ident: Callable[[Tensor], Tensor] = lambda t: t  # noqa: E731
        self.copy(module.weight, f"{scope}/gamma", ident)
        self.copy(module.bias, f"{scope}/beta", ident)
        assert module.running_mean is not None and module.running_var is not None
        self.copy(module.running_mean, f"{scope}/moving_mean", ident)
        self.copy(module.running_var, f"{scope}/moving_variance", ident)

    def conv2d(self, module: nn.Module, scope: str) -> None:
        assert isinstance(module, nn.Conv2d)
        # TF [kh, kw, in, out] -> torch [out, in, kh, kw]
        self.copy(module.weight, f"{scope}/kernel", lambda t: t.permute(3, 2, 0, 1))
        assert module.bias is not None
        self.copy(module.bias, f"{scope}/bias", lambda t: t)

    def conv_as_1d(self, module: nn.Module, scope: str) -> None:
        assert isinstance(module, nn.Conv1d)
        # TF [k, features, 1, out] over a [B, time, features, 1] map -> torch [out, features, k]
        self.copy(module.weight, f"{scope}/kernel", lambda t: t[:, :, 0, :].permute(2, 1, 0))
        assert module.bias is not None
        self.copy(module.bias, f"{scope}/bias", lambda t: t)

    def dense(self, module: nn.Linear, scope: str) -> None:
        self.copy(module.weight, f"{scope}/kernel", lambda t: t.T)
        self.copy(module.bias, f"{scope}/bias", lambda t: t)

    def check_all_used(self) -> None:
        unused = sorted(set(self.weights) - self.used)
        if unused:
            raise ModelMismatchError(
                f"checkpoint has variables this network does not use: {unused[:5]}"
                f"{' ...' if len(unused) > 5 else ''}; wrong architecture for this checkpoint"
            )


def _same_pad(kernel: int) -> tuple[int, int]:
    """TensorFlow 'same' padding for stride 1: (before, after), the extra one at the end."""
    total = kernel - 1
    return total // 2, total - total // 2


def _conv_relu_bn_maxfreq(conv: nn.Module, bn: nn.Module, x: Tensor) -> Tensor:
    """``max over frequency of bn(relu(conv(x)))`` without running relu and batch norm on
    the large ``[B, C, T, F]`` map (eval mode only).

    relu is increasing and eval-mode batch norm is, per channel, increasing when
    ``gamma >= 0`` and decreasing otherwise; so the maximum is ``bn(relu(max_f conv))`` or
    ``bn(relu(min_f conv))`` — the same element through the same operations.
    """
    y = conv(x)
    if bn.training:
        return bn(F.relu(y)).amax(dim=3)  # type: ignore[no-any-return]
    lo, hi = torch.aminmax(y, dim=3)
    assert isinstance(bn, nn.BatchNorm2d)
    flip = (bn.weight < 0).view(1, -1, 1)
    picked = torch.where(flip, lo, hi) if bool(flip.any()) else hi
    return bn(F.relu(picked).unsqueeze(3)).squeeze(3)  # type: ignore[no-any-return]


def _conv_relu_bn_maxpool(
    conv: nn.Module, bn: nn.Module, x: Tensor, kernel: tuple[int, int], stride: tuple[int, int]
) -> Tensor:
    """``max_pool(bn(relu(conv(x))))`` with relu and batch norm applied after pooling
    (eval mode; same monotonicity argument as :func:`_conv_relu_bn_maxfreq`)."""
    y = conv(x)
    if bn.training:
        return F.max_pool2d(bn(F.relu(y)), kernel_size=kernel, stride=stride)
    assert isinstance(bn, nn.BatchNorm2d)
    picked = F.max_pool2d(y, kernel_size=kernel, stride=stride)
    flip = (bn.weight < 0).view(1, -1, 1, 1)
    if bool(flip.any()):
        lo = -F.max_pool2d(-y, kernel_size=kernel, stride=stride)
        picked = torch.where(flip, lo, picked)
    return bn(F.relu(picked))  # type: ignore[no-any-return]


class MusicnnNet(nn.Module):
    """musicnn (front end + mid end + back end) for 96-band log-mel patches."""

    TIMBRAL_KERNELS = ((7, 38), (7, 67))  # int(0.4·96), int(0.7·96)
    TEMPORAL_KERNELS = (128, 64, 32)

    def __init__(
        self,
        num_classes: int = 50,
        n_mels: int = 96,
        num_filt_frontend: float = 1.6,
        num_filt_midend: int = 64,
        num_units_backend: int = 200,
    ) -> None:
        super().__init__()
        n_timbral = int(num_filt_frontend * 128)
        n_temporal = int(num_filt_frontend * 32)
        self.n_mels = n_mels
        self.input_bn = _bn2d(1)
        self.timbral = nn.ModuleList(
            nn.Conv2d(1, n_timbral, kernel_size=k) for k in self.TIMBRAL_KERNELS
        )
        self.timbral_bn = nn.ModuleList(_bn2d(n_timbral) for _ in self.TIMBRAL_KERNELS)
        self.temporal = nn.ModuleList(
            nn.Conv2d(1, n_temporal, kernel_size=(k, 1)) for k in self.TEMPORAL_KERNELS
        )
        self.temporal_bn = nn.ModuleList(_bn2d(n_temporal) for _ in self.TEMPORAL_KERNELS)
        front_ch = n_timbral * len(self.TIMBRAL_KERNELS) + n_temporal * len(self.TEMPORAL_KERNELS)
        self.frontend_channels = front_ch
        self.mid = nn.ModuleList(
            [
                nn.Conv1d(front_ch, num_filt_midend, 7),
                nn.Conv1d(num_filt_midend, num_filt_midend, 7),
                nn.Conv1d(num_filt_midend, num_filt_midend, 7),
            ]
        )
        self.mid_bn = nn.ModuleList(_bn1d(num_filt_midend) for _ in range(3))
        self.pooled_channels = front_ch + 3 * num_filt_midend  # 753
        self.pool_bn = _bn1d(2 * self.pooled_channels)
        self.dense = nn.Linear(2 * self.pooled_channels, num_units_backend)
        self.dense_bn = _bn1d(num_units_backend)
        self.out = nn.Linear(num_units_backend, num_classes)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x``: ``[B, frames, mels]`` → logits, tags, mean_pool, max_pool, penultimate."""
        h = self.input_bn(x.unsqueeze(1))  # [B, 1, T, F] (NCHW; TF had NHWC)
        feats: list[Tensor] = []
        padded = F.pad(h, (0, 0, 3, 3))
        for conv, bn in zip(self.timbral, self.timbral_bn, strict=True):
            feats.append(_conv_relu_bn_maxfreq(conv, bn, padded))  # [B, C, T]
        for k, conv, bn in zip(self.TEMPORAL_KERNELS, self.temporal, self.temporal_bn, strict=True):
            before, after = _same_pad(k)
            feats.append(_conv_relu_bn_maxfreq(conv, bn, F.pad(h, (0, 0, before, after))))
        front = torch.cat(feats, dim=1)  # [B, 561, T]
        mids: list[Tensor] = []
        m = front
        for i, (conv, bn) in enumerate(zip(self.mid, self.mid_bn, strict=True)):
            y = bn(F.relu(conv(F.pad(m, (3, 3)))))
            m = y if i == 0 else y + m
            mids.append(m)
        fmap = torch.cat([front, *mids], dim=1)  # [B, 753, T]
        max_pool = fmap.amax(dim=2)
        mean_pool = fmap.mean(dim=2)
        # TF concatenates [max, mean] on a trailing axis then flattens: interleaved per channel
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # [B, 1506]
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        logits = self.out(penultimate)
        return {
            "logits": logits,
            "tags": torch.sigmoid(logits),
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "penultimate": penultimate,
        }

    def load_tf_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load the variables of a musicnn TensorFlow checkpoint (optimizer slots removed)."""
        ld = _TfLoader(weights)
        ld.bn(self.input_bn, "batch_normalization")
        convs = [*self.timbral, *self.temporal]
        bns = [*self.timbral_bn, *self.temporal_bn]
        for i, (conv, bn) in enumerate(zip(convs, bns, strict=True)):
            ld.conv2d(conv, "conv2d" if i == 0 else f"conv2d_{i}")
            ld.bn(bn, f"batch_normalization_{i + 1}")
        base = len(convs)
        for j, (conv1d, bn1d) in enumerate(zip(self.mid, self.mid_bn, strict=True)):
            ld.conv_as_1d(conv1d, f"conv2d_{base + j}")
            ld.bn(bn1d, f"batch_normalization_{base + j + 1}")
        ld.bn(self.pool_bn, f"batch_normalization_{base + 4}")
        ld.dense(self.dense, "dense")
        ld.bn(self.dense_bn, f"batch_normalization_{base + 5}")
        ld.dense(self.out, "dense_1")
        ld.check_all_used()


class VggNet(nn.Module):
    """The musicnn package's VGG-like baseline (5 × [3×3 conv, batch norm, max pool])."""

    POOLS = (
        ((4, 1), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((4, 4), (4, 4)),
    )

    def __init__(
        self, num_classes: int = 50, num_filters: int = 128, frames: int = 187, n_mels: int = 96
    ) -> None:
        super().__init__()
        self.input_bn = _bn2d(1)
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else num_filters, num_filters, 3, padding=1) for i in range(5)
        )
        self.bns = nn.ModuleList(_bn2d(num_filters) for _ in range(5))
        h, w = frames, n_mels
        for (kh, kw), (sh, sw) in self.POOLS:
            h, w = (h - kh) // sh + 1, (w - kw) // sw + 1
        self.pool5_shape = (h, w, num_filters)  # NHWC, (2, 1, 128) for 187×96
        self.out = nn.Linear(h * w * num_filters, num_classes)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x``: ``[B, 187, 96]`` → logits, tags, pool5 (flattened NHWC, 256 values)."""
        h = self.input_bn(x.unsqueeze(1))
        for conv, bn, (k, s) in zip(self.convs, self.bns, self.POOLS, strict=True):
            h = _conv_relu_bn_maxpool(conv, bn, h, k, s)
        pool5 = h.permute(0, 2, 3, 1).flatten(1)  # NHWC flatten, as TensorFlow
        logits = self.out(pool5)
        return {"logits": logits, "tags": torch.sigmoid(logits), "pool5": pool5}

    def load_tf_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load the variables of a musicnn-package VGG TensorFlow checkpoint."""
        ld = _TfLoader(weights)
        ld.bn(self.input_bn, "batch_normalization")
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            ld.conv2d(conv, f"{i + 1}CNN")
            ld.bn(bn, f"batch_normalization_{i + 1}")
        ld.dense(self.out, "dense")
        ld.check_all_used()
