"""Valence-arousal targets and helpers shared by the VA family and fine-tuning.

Text targets: ISEAR and GoEmotions labels placed in valence-arousal with the NRC VAD
lexicon (the label word's scores), and EmoBank's human ratings rescaled to [0, 1]. Music
targets: each 4Q clip's quadrant combined with the mean NRC position of its AllMusic mood
tags, so clips of one quadrant spread by how their tags read. :func:`fourq_features`
caches the backbone features of every 4Q clip; :func:`fit_va_head` trains a sigmoid head.
The family itself (training, scoring) is :mod:`storycue.training.families.va`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

from storycue.log import get_logger
from storycue.models.heads import HeadConfig, MLPHead
from storycue.training.loop import LoopOptions, RegressionData, fit_regression

log = get_logger(__name__)


def fit_va_head(
    in_dim: int,
    hidden: Sequence[int],
    train: RegressionData,
    val: RegressionData,
    *,
    dropout: float,
    **loop: Unpack[LoopOptions],
) -> tuple[MLPHead, dict[str, Any]]:
    """A new sigmoid head regressing (valence, arousal), trained with early stopping."""
    head = MLPHead(
        HeadConfig(in_dim=in_dim, out_dim=2, hidden=list(hidden), dropout=dropout, output="sigmoid")
    )
    return head, fit_regression(head, train, val, **loop)
