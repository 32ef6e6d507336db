"""Retrieval metrics: R@1/5/10, median and mean rank, text->video and video->text.

Ties are broken deterministically by index: among equal scores the lower index ranks first,
so the same scores always give the same ranks (and a constant scorer is not rewarded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

RECALL_AT = (1, 5, 10)


def _rank_of(scores: Tensor, target: Tensor) -> Tensor:
    """1-based rank of column `target[r]` in each row r of scores (R, C); ties: lower index first."""
    target_score = scores.gather(1, target.unsqueeze(1))  # (R, 1)
    cols = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0)  # (1, C)
    ahead = (scores > target_score) | ((scores == target_score) & (cols < target.unsqueeze(1)))
    return ahead.sum(dim=1) + 1  # (R,)


def summarize_ranks(ranks: Tensor) -> dict[str, float]:
    """R@k in percent, MdR and MnR of 1-based ranks."""
    r = ranks.double()
    out = {f"R@{k}": float((r <= k).double().mean() * 100) for k in RECALL_AT}
    out["MdR"] = float(np.median(r.numpy()))  # mean of the two middle ranks when even
    out["MnR"] = float(r.mean())
    return out


def t2v_ranks(scores: Tensor, caption_clip: Sequence[int]) -> Tensor:
    """scores: (Q, N) caption x clip; rank of each caption's own clip among all clips."""
    target = torch.as_tensor(list(caption_clip), dtype=torch.long, device=scores.device)
    return _rank_of(scores, target)


def v2t_ranks(scores: Tensor, caption_clip: Sequence[int]) -> Tensor:
    """Rank, for each clip that has captions, of its best-ranked own caption among all captions.

    (The usual multi-caption protocol: a clip is retrieved at the first position where any of
    its captions appears.) Clips without captions are skipped.
    """
    cols = scores.T  # (N, Q): per clip, scores of every caption
    owner = torch.as_tensor(list(caption_clip), dtype=torch.long, device=scores.device)  # (Q,)
    clips = torch.unique(owner)  # sorted
    ranks = []
    for c in clips.tolist():
        row = cols[c]  # (Q,)
        own = (owner == c).nonzero().squeeze(1)  # caption indices of clip c, ascending
        # the first own caption in (score desc, index asc) order is the one that counts
        best = own[torch.argmax(row[own])]  # argmax returns the first (lowest-index) maximum
        ranks.append(_rank_of(row.unsqueeze(0), best.view(1))[0])
    return torch.stack(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def retrieval_metrics(scores: Tensor, caption_clip: Sequence[int]) -> dict[str, dict[str, float]]:
    """{"t2v": {...}, "v2t": {...}} for a (Q captions, N clips) score matrix."""
    if scores.dim() != 2 or scores.shape[0] != len(caption_clip):
        raise ValueError(f"scores {tuple(scores.shape)} do not fit {len(caption_clip)} captions")
    scores = scores.detach().float().cpu()
    return {
        "t2v": summarize_ranks(t2v_ranks(scores, caption_clip)),
        "v2t": summarize_ranks(v2t_ranks(scores, caption_clip)),
    }
