"""A small, deterministic training loop for heads on cached features."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import numpy as np
import torch
from torch import nn

from storycue.errors import InvalidInputError
from storycue.log import get_logger
from storycue.models.heads import MLPHead

log = get_logger(__name__)


@dataclass
class RegressionData:
    x: np.ndarray
    y: np.ndarray
    #: Weight of each row ``(N,)``, or of each target of each row ``(N, D)``.
    w: np.ndarray
    #: Where true (per row ``(N,)`` or per target ``(N, D)``), the target says only on
    #: which side of :data:`SIDE_CENTRE` the output belongs (``y > SIDE_CENTRE``: above),
    #: and the loss is the logistic loss of that side instead of the squared error.
    side: np.ndarray | None = None


#: The point a side target is read against (the neutral point of a [0, 1] axis).
SIDE_CENTRE = 0.5


class LoopOptions(TypedDict):
    """How :func:`fit_regression` trains: AdamW's rate and weight decay, at most
    ``max_epochs`` epochs, stopping after ``patience`` without a better validation loss."""

    lr: float
    weight_decay: float
    max_epochs: int
    patience: int
    batch_size: int
    seed: int
    #: Sharpness of the logistic loss of side targets (``RegressionData.side``): the
    #: output ``p`` is on the right side with probability ``sigmoid(k * ±(p - 0.5))``.
    side_sharpness: NotRequired[float]


def weighted_loss(
    pred: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    side: torch.Tensor | None = None,
    sharpness: float = 10.0,
) -> torch.Tensor:
    """Weighted loss: squared error per target, or the logistic loss of the target's side
    where ``side`` is true; ``w`` weighs rows ``(N,)``, or each output of each row
    ``(N, D)``."""
    per = (pred - y) ** 2
    if side is not None:
        sign = torch.where(y > SIDE_CENTRE, 1.0, -1.0)
        logistic = nn.functional.softplus(-sign * sharpness * (pred - SIDE_CENTRE))
        mask = side if side.ndim == 2 else side[:, None].expand_as(per)
        per = torch.where(mask, logistic, per)
    if w.ndim == 2:
        return per.mul(w).sum() / w.sum().clamp(min=1e-9)
    return per.mean(dim=1).mul(w).sum() / w.sum().clamp(min=1e-9)


def _side_tensor(data: RegressionData) -> torch.Tensor | None:
    if data.side is None:
        return None
    side = np.asarray(data.side, bool)
    if side.shape not in ((len(data.y),), tuple(np.shape(data.y))):
        raise InvalidInputError(
            f"side mask of shape {side.shape} for targets of shape {np.shape(data.y)}"
        )
    return torch.from_numpy(side)


def fit_regression(
    head: MLPHead,
    train: RegressionData,
    val: RegressionData,
    *,
    lr: float,
    weight_decay: float,
    max_epochs: int,
    patience: int,
    batch_size: int,
    seed: int,
    side_sharpness: float = 10.0,
) -> dict[str, Any]:
    """Weighted-MSE training (logistic side losses where ``RegressionData.side`` says so)
    with AdamW and early stopping on validation loss.

    The head's input standardisation is fitted on ``train.x``; the best epoch's weights
    (lowest validation loss) are restored at the end.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt, yt, wt = (torch.from_numpy(np.asarray(a, np.float32)) for a in (train.x, train.y, train.w))
    xv, yv, wv = (torch.from_numpy(np.asarray(a, np.float32)) for a in (val.x, val.y, val.w))
    st, sv = _side_tensor(train), _side_tensor(val)
    head.fit_normalisation(xt)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    best = (float("inf"), -1)
    best_state = copy.deepcopy(head.state_dict())
    losses: list[float] = []
    for epoch in range(max_epochs):
        head.train()
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            side = None if st is None else st[idx]
            loss = weighted_loss(head(xt[idx]), yt[idx], wt[idx], side, side_sharpness)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
        head.eval()
        with torch.inference_mode():
            vloss = float(weighted_loss(head(xv), yv, wv, sv, side_sharpness))
        losses.append(vloss)
        if vloss < best[0] - 1e-6:
            best = (vloss, epoch)
            best_state = copy.deepcopy(head.state_dict())
        elif epoch - best[1] >= patience:
            break
    head.load_state_dict(best_state)
    head.eval()
    log.info("head_trained", best_epoch=best[1], val_loss=round(best[0], 5), epochs=len(losses))
    return {"best_epoch": best[1], "val_loss": best[0], "epochs": len(losses)}
