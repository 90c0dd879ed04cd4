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
    #: Per row ``(N,)``: 0 = the target is a position the output must reach; ``g`` > 0 =
    #: the target is met by the output up to a scale and an offset per output, learned with
    #: the head and shared by the rows of group ``g`` (:class:`GroupAffine`): such rows teach
    #: the ordering and spacing of their texts along each axis, not where they sit.
    group: np.ndarray | None = None


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


class GroupAffine(nn.Module):
    """A scale and an offset per output for each row group > 0 (groups of
    :attr:`RegressionData.group`), identity at the start; rows of group 0 pass unchanged.

    Fitted with the head, it makes a group's squared error the residual of the best linear
    map from the head's outputs to that group's targets: ratings on a scale of their own (a
    rated corpus whose neutral point and spread are not the labels') then constrain how the
    head orders texts, while the other groups decide where on the plane they sit.
    """

    def __init__(self, groups: int, outputs: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(groups, outputs))
        self.shift = nn.Parameter(torch.zeros(groups, outputs))

    def forward(self, pred: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        g = (group - 1).clamp(min=0)
        mapped = pred * self.scale[g] + self.shift[g]
        out: torch.Tensor = torch.where((group > 0)[:, None], mapped, pred)
        return out

    def describe(self) -> list[dict[str, list[float]]]:
        """Each group's fitted scale and offset per output (for the training report)."""
        return [
            {"scale": [round(float(v), 4) for v in sc], "shift": [round(float(v), 4) for v in sh]}
            for sc, sh in zip(self.scale.detach(), self.shift.detach(), strict=True)
        ]


def _group_tensor(data: RegressionData) -> torch.Tensor | None:
    if data.group is None:
        return None
    group = np.asarray(data.group)
    if group.shape != (len(data.y),) or not np.issubdtype(group.dtype, np.integer):
        raise InvalidInputError(f"group must be integers of shape ({len(data.y)},)")
    if group.size and group.min() < 0:
        raise InvalidInputError("group numbers must be >= 0")
    return torch.from_numpy(group.astype(np.int64))


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
    (lowest validation loss) are restored at the end. Rows of a ``RegressionData.group``
    > 0 are scored through that group's :class:`GroupAffine` map, fitted with the head
    (without weight decay: it would pull the scale to zero) and used only in training;
    the report holds its fitted values (``affine``).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt, yt, wt = (torch.from_numpy(np.asarray(a, np.float32)) for a in (train.x, train.y, train.w))
    xv, yv, wv = (torch.from_numpy(np.asarray(a, np.float32)) for a in (val.x, val.y, val.w))
    st, sv = _side_tensor(train), _side_tensor(val)
    gt, gv = _group_tensor(train), _group_tensor(val)
    if (gt is None) != (gv is None):
        raise InvalidInputError("train and validation must both have row groups or neither")
    groups = 0
    if gt is not None and gv is not None and len(gt) + len(gv):
        groups = int(torch.cat([gt, gv]).max())
    affine = GroupAffine(groups, yt.shape[1]) if groups else None
    head.fit_normalisation(xt)
    params: list[dict[str, Any]] = [{"params": list(head.parameters())}]
    if affine is not None:
        params.append({"params": list(affine.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def predict(x: torch.Tensor, group: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = head(x)
        if affine is not None and group is not None:
            out = affine(out, group)
        return out

    def snapshot() -> dict[str, Any]:
        return copy.deepcopy(
            {"head": head.state_dict(), "affine": None if affine is None else affine.state_dict()}
        )

    best = (float("inf"), -1)
    best_state = snapshot()
    losses: list[float] = []
    for epoch in range(max_epochs):
        head.train()
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            side = None if st is None else st[idx]
            group = None if gt is None else gt[idx]
            loss = weighted_loss(predict(xt[idx], group), yt[idx], wt[idx], side, side_sharpness)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
        head.eval()
        with torch.inference_mode():
            vloss = float(weighted_loss(predict(xv, gv), yv, wv, sv, side_sharpness))
        losses.append(vloss)
        if vloss < best[0] - 1e-6:
            best = (vloss, epoch)
            best_state = snapshot()
        elif epoch - best[1] >= patience:
            break
    head.load_state_dict(best_state["head"])
    head.eval()
    report: dict[str, Any] = {"best_epoch": best[1], "val_loss": best[0], "epochs": len(losses)}
    if affine is not None:
        affine.load_state_dict(best_state["affine"])
        report["affine"] = affine.describe()
    log.info("head_trained", best_epoch=best[1], val_loss=round(best[0], 5), epochs=len(losses),
             affine=report.get("affine"))  # fmt: skip
    return report
