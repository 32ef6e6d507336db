"""Training loss: symmetric InfoNCE on partial-alignment scores + view-diversity regulariser."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOGIT_SCALE = 100.0  # fixed, as in the reference


def info_nce(scores: Tensor, logit_scale: float = LOGIT_SCALE) -> Tensor:
    """scores: (B, B) text x video, matching pairs on the diagonal."""
    logits = scores * logit_scale
    target = torch.arange(scores.shape[0], device=scores.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def diversity(views: Tensor) -> Tensor:
    """Mean off-diagonal cosine among the K views of each sample. views: (B, K, D)."""
    k = views.shape[1]
    if k < 2:
        return views.new_zeros(())
    v = F.normalize(views, dim=-1)
    gram = v @ v.transpose(1, 2)  # (B, K, K)
    off_diag = gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(dim=1)
    return (off_diag / (k * (k - 1))).mean()


def t2v_loss(
    scores: Tensor, text_views: Tensor | None, video_views: Tensor | None, diversity_weight: float
) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its parts (for logging)."""
    nce = info_nce(scores)
    total = nce
    parts = {"nce": float(nce.detach())}
    if diversity_weight > 0 and text_views is not None and video_views is not None:
        div = (diversity(text_views) + diversity(video_views)) / 2
        total = total + diversity_weight * div
        parts["diversity"] = float(div.detach())
    parts["loss"] = float(total.detach())
    return total, parts
