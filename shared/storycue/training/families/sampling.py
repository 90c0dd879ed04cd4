"""Negative sampling for the metric-learning families.

Distance-weighted sampling (Wu, Manmatha, Smola & Krähenbühl 2017, "Sampling matters in
deep embedding learning"): for points spread uniformly on the unit sphere in ``n``
dimensions, pairwise distances follow ``q(d) ∝ d^(n-2) (1 - d²/4)^((n-3)/2)``, which piles up
near √2. Drawing negatives with probability ∝ ``q(d)^-1`` spreads the sampled distances
over the whole range instead. As in the paper, distances are clipped from below at
``cutoff`` (so near-duplicates do not dominate with huge weights) and candidates at or
beyond ``nonzero_loss_cutoff`` get weight 0 (they would give no loss anyway).
"""

from __future__ import annotations

from typing import Literal

import torch

Strategy = Literal["distance", "random"]


def distance_weighted_probs(
    distances: torch.Tensor,
    dim: int,
    mask: torch.Tensor | None = None,
    *,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
) -> torch.Tensor:
    """Sampling probabilities ``(B, M)`` of candidates at Euclidean ``distances`` ``(B, M)``
    between unit vectors of dimension ``dim``.

    ``mask[i, j]`` (default all true) says whether candidate ``j`` may be a negative of
    anchor ``i``. Each row sums to 1 over its allowed candidates; a row whose allowed
    candidates all lie beyond ``nonzero_loss_cutoff`` falls back to uniform over them; a
    row with no allowed candidate is all zero.
    """
    d64 = distances.detach().to(torch.float64)
    allowed = torch.ones_like(d64, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    d = d64.clamp(min=cutoff, max=2.0 - 1e-6)
    n = float(max(dim, 2))
    # log q(d)^-1 = -(n - 2) log d - (n - 3)/2 log(1 - d²/4)
    log_w = -(n - 2.0) * torch.log(d) - ((n - 3.0) / 2.0) * torch.log1p(-0.25 * d * d)
    keep = allowed & (d64 < nonzero_loss_cutoff)
    log_w = log_w.masked_fill(~keep, -float("inf"))
    row_max = log_w.max(dim=1, keepdim=True).values
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    w = torch.exp(log_w - row_max)
    empty = w.sum(dim=1, keepdim=True) <= 0
    w = torch.where(empty, allowed.to(torch.float64), w)
    total = w.sum(dim=1, keepdim=True)
    probs = torch.where(total > 0, w / total.clamp(min=1e-300), torch.zeros_like(w))
    return probs.to(torch.float32)


def sample_negatives(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator,
    *,
    strategy: Strategy = "distance",
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
) -> torch.Tensor:
    """One negative candidate index per anchor (``-1`` where none is allowed).

    ``anchors`` ``(B, d)`` and ``candidates`` ``(M, d)`` are L2-normalised here; ``mask``
    ``(B, M)`` marks the allowed negatives. ``strategy`` is ``"distance"`` (see
    :func:`distance_weighted_probs`) or ``"random"`` (uniform over allowed candidates).
    """
    with torch.no_grad():
        a = torch.nn.functional.normalize(anchors.detach(), dim=-1)
        c = torch.nn.functional.normalize(candidates.detach(), dim=-1)
        if strategy == "distance":
            dist = torch.cdist(a, c)
            probs = distance_weighted_probs(
                dist, a.shape[1], mask, cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff
            )
        else:
            probs = mask.to(torch.float32)
        out = torch.full((a.shape[0],), -1, dtype=torch.long)
        ok = probs.sum(dim=1) > 0
        if bool(ok.any()):
            out[ok] = torch.multinomial(probs[ok], 1, generator=generator).squeeze(1)
        return out
