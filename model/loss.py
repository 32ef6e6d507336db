"""Training loss: symmetric InfoNCE on the batch logit matrix + view-diversity regulariser.

As the authors train (their `NormSoftmaxLoss` and `MultiviewLoss`): the text->video and
video->text cross-entropies are SUMMED, and the diversity term is taken on the K views after
"plus". The earlier objective (the two directions averaged) stays selectable for the ablation.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LOGIT_SCALE = 100.0  # fixed, as in the reference

NceReduction = Literal["sum", "mean"]


def info_nce(scores: Tensor, logit_scale: float = LOGIT_SCALE, reduction: NceReduction = "sum") -> Tensor:
    """scores: (B, B) text x video, matching pairs on the diagonal.

    reduction "sum": CE(t->v) + CE(v->t), the authors' loss; "mean": their average.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    logits = scores * logit_scale  # (B, B)
    target = torch.arange(scores.shape[0], device=scores.device)
    total = F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)
    return total if reduction == "sum" else total / 2


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
    scores: Tensor,
    text_views: Tensor | None,
    video_views: Tensor | None,
    diversity_weight: float,
    nce_reduction: NceReduction = "sum",
) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its parts (for logging).

    scores: (B, B) training logits; text_views/video_views: (B, K, D) the views the diversity
    term is taken on (the caller picks: after "plus" as the authors, or the raw decoder outputs).
    """
    nce = info_nce(scores, reduction=nce_reduction)
    total = nce
    parts = {"nce": float(nce.detach())}
    if diversity_weight > 0 and text_views is not None and video_views is not None:
        div = (diversity(text_views) + diversity(video_views)) / 2
        total = total + diversity_weight * div
        parts["diversity"] = float(div.detach())
    parts["loss"] = float(total.detach())
    return total, parts
