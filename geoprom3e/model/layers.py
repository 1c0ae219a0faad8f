"""Building blocks of ProM3E, laid out so that state_dict names match the published checkpoint."""

from __future__ import annotations

import torch
from torch import nn


class MLPHead(nn.Module):
    """``LayerNorm → Linear → GELU → Dropout → Linear → Dropout`` as ``net.{0,1,4}`` (projectors, decoders, MLPs)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x)


class EncoderBlock(nn.Module):
    """Post-LN transformer block: ``x = LN1(MHA(x) + x); x = LN2(MLP(x) + x)``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPHead(dim, mlp_dim, dim, dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        a = self.attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)[0]
        x = self.norm1(a + x)
        return self.norm2(self.mlp(x) + x)
