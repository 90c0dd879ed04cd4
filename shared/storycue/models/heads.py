"""Small MLP heads that map frozen encoder features into an emotion space."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, Field
from torch import nn

OutputKind = Literal["linear", "sigmoid", "l2", "softmax", "onehot"]


class HeadConfig(BaseModel):
    """Architecture of one head; stored in every checkpoint."""

    in_dim: int = Field(gt=0)
    out_dim: int = Field(gt=0)
    hidden: list[int] = Field(default_factory=lambda: [256])
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    output: OutputKind = "linear"
    scatter: list[int] | None = Field(
        default=None,
        description="For classifier heads: output unit i is written to index scatter[i] of "
        "a joint vocabulary of scatter_dim labels (so text and music classifiers share one "
        "space even when their vocabularies differ).",
    )
    scatter_dim: int | None = None


class MLPHead(nn.Module):
    """Standardise input → [Linear → LayerNorm → GELU → Dropout]* → Linear → output map.

    The feature mean and standard deviation are buffers fitted on the training data and
    saved with the weights, so a checkpoint carries everything inference needs.
    """

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("feature_mean", torch.zeros(config.in_dim))
        self.register_buffer("feature_std", torch.ones(config.in_dim))
        layers: list[nn.Module] = []
        width = config.in_dim
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(config.dropout)]
            width = h
        layers.append(nn.Linear(width, config.out_dim))
        self.net = nn.Sequential(*layers)

    def fit_normalisation(self, features: torch.Tensor) -> None:
        """Set the input standardisation from training features ``(N, in_dim)``."""
        self.get_buffer("feature_mean").copy_(features.mean(dim=0))
        self.get_buffer("feature_std").copy_(features.std(dim=0).clamp(min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.logits(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's raw outputs (for training losses)."""
        mean = self.get_buffer("feature_mean")
        std = self.get_buffer("feature_std")
        out: torch.Tensor = self.net((x - mean) / std)
        return out

    def post(self, y: torch.Tensor) -> torch.Tensor:
        """Map raw outputs into the space: squash, normalise or (for classifiers) place
        probabilities or the arg-max label in the joint vocabulary."""
        kind = self.config.output
        if kind == "sigmoid":
            y = torch.sigmoid(y)
        elif kind == "l2":
            y = nn.functional.normalize(y, dim=-1)
        elif kind == "softmax":
            y = torch.softmax(y, dim=-1)
        elif kind == "onehot":
            y = nn.functional.one_hot(y.argmax(dim=-1), y.shape[-1]).to(y.dtype)
        if self.config.scatter is not None:
            dim = self.config.scatter_dim or (max(self.config.scatter) + 1)
            joint = y.new_zeros((*y.shape[:-1], dim))
            joint[..., self.config.scatter] = y
            y = joint
        return y

    @property
    def space_dim(self) -> int:
        """Dimension of :meth:`forward`'s output."""
        if self.config.scatter is not None:
            return self.config.scatter_dim or (max(self.config.scatter) + 1)
        return self.config.out_dim

    def extra_repr(self) -> str:
        cfg: dict[str, Any] = self.config.model_dump()
        return ", ".join(f"{k}={v}" for k, v in cfg.items())
