"""Temporal branch: lets order and motion reach the per-frame vectors of the video set.

Without it the T frame vectors are encoded independently, so a clip and its time-reversed copy
give the same set: "moving left" and "moving right" cannot be told apart. The branch is a small
pre-norm transformer over the frame sequence with learned position embeddings, added as a
residual whose output projection starts at zero: at initialisation it is exactly the identity,
so a model gains the branch without changing what it computed before training.

Why this and not the authors' STAN (a side network over the patch tokens of the last 4 ViT
layers): it needs only the projected CLS vectors the backbone already returns, so it works
unchanged for every open_clip tower (ViT-B/32, ViT-B/16, our tiny test towers) and adds
~12 D^2 parameters per layer. Two layers, because T = 12 frames is a short sequence (CLIP4Clip's
seqTransf uses 4 over the same input; 2 keep the video side cheap to index); 8 heads by default
(head width 64 at D = 512, as in CLIP's own attention). The video side stays text-agnostic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TemporalBranch(nn.Module):
    """F (B, T, D) -> F + W_out(Transformer(LN(F) + P)), W_out zero-initialised."""

    def __init__(self, dim: int, frames: int, layers: int, heads: int, window: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"temporal branch: {heads} heads do not divide the dimension {dim}")
        self.frames = frames
        self.window = window  # frames attended on either side; 0 = all
        self.norm_in = nn.LayerNorm(dim)
        self.position = nn.Parameter(torch.randn(frames, dim) * 0.02)  # (T, D)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=4 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor only matters with padding masks; frames have none
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm_out = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        # zero output projection: identity at init, and a model without the branch is reproduced
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feats: Tensor) -> Tensor:
        # feats: (B, T, D) projected CLS vectors of the frames, in time order
        if feats.shape[1] != self.frames:
            raise ValueError(f"temporal branch was built for {self.frames} frames, got {feats.shape[1]}")
        h = self.norm_in(feats) + self.position.to(feats.dtype)  # (B, T, D)
        mask = None  # full attention (the fast path)
        if self.window > 0:  # (T, T) True = may not attend: frames more than `window` apart
            idx = torch.arange(self.frames, device=feats.device)
            mask = (idx[:, None] - idx[None, :]).abs() > self.window
        h = self.norm_out(self.encoder(h, mask=mask))  # (B, T, D)
        return feats + self.out(h)  # (B, T, D)
