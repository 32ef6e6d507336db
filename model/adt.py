"""The ADT decoder: K shared query tokens decompose a memory (frames or words) into K views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeedForward(nn.Module):
    """D -> 4D -> D with GELU; also used as the frame memory MLP_v (no residual there)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DecoderLayer(nn.Module):
    """x = x + SelfAttn(x); x = x + CrossAttn(x, memory); x = x + FFN(x)."""

    def __init__(self, dim: int, heads: int, pre_norm: bool = False) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = FeedForward(dim)
        # The reference has no norms; the pre-norm variant is opt-in per config.
        norm = (lambda: nn.LayerNorm(dim)) if pre_norm else (lambda: nn.Identity())
        self.norm_self, self.norm_cross, self.norm_ffn = norm(), norm(), norm()

    def forward(
        self, x: Tensor, memory: Tensor, memory_pad: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        # x: (B, K, D); memory: (B, M, D); memory_pad: (B, M) True where padding
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norm_cross(x)
        attended, weights = self.cross_attn(
            h, memory, memory, key_padding_mask=memory_pad, need_weights=need_weights
        )
        x = x + attended
        x = x + self.ffn(self.norm_ffn(x))
        return x, weights  # weights: (B, K, M) averaged over heads, when asked


class ADTDecoder(nn.Module):
    """One modality's decoder block stack. The query tokens are passed in (they are shared)."""

    def __init__(self, dim: int, layers: int, heads: int, pre_norm: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, pre_norm) for _ in range(layers))

    def forward(self, queries: Tensor, memory: Tensor, memory_pad: Tensor | None = None) -> Tensor:
        # queries: (K, D) shared parameter -> (B, K, D)
        x = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        for layer in self.layers:
            x, _ = layer(x, memory, memory_pad)
        return x  # (B, K, D)

    @torch.no_grad()
    def attention_maps(self, queries: Tensor, memory: Tensor, memory_pad: Tensor | None = None) -> Tensor:
        """Cross-attention weights of every layer: (layers, B, K, M), for inspection."""
        x = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        maps = []
        for layer in self.layers:
            x, w = layer(x, memory, memory_pad, need_weights=True)
            assert w is not None
            maps.append(w)
        return torch.stack(maps)
