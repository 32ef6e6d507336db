"""Why a moment matched: the partial-alignment score split over the clip's stored vectors.

The score is (t2v + v2t) / 2 with
    t2v = sum_i w_t[i] * a_i,  a_i = sum_j p_ij * S_ij   (p: softmax over j of tau * S)
    v2t = sum_j w_v[j] * b_j
so it is exactly a sum over video vectors j of
    c_j = (sum_i w_t[i] * p_ij * S_ij + w_v[j] * b_j) / 2.
The first T rows of a stored clip are its frames (sampled at the middle of T equal segments of
the window), the remaining K are the decomposition views; c over frames is the relevance along
the clip and sum(c over views) is what the views contributed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from indexer.media.video import segment_times
from model.scoring import alignment_terms


@dataclass(frozen=True)
class FrameContribution:
    time: float  # seconds in the video
    index: int  # frame row in the clip (0..T-1)
    contribution: float  # share of the score carried by this frame's vector


@dataclass(frozen=True)
class Explanation:
    score: float  # the score rebuilt from the contributions (equals the search score)
    frames_contribution: float  # sum over the T frame vectors
    views_contribution: float  # sum over the K view vectors (0 in zero-shot mode)
    view_contributions: list[float]  # (K,)
    frame_times: list[float]  # (T,) in clip order
    relevance: list[float]  # (T,) per-frame contribution in clip order
    top_frames: list[FrameContribution]  # frames best first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vector_contributions(text: Tensor, video: Tensor, tau: float) -> Tensor:
    """c (n_v,): each video vector's additive share of the score. text (n_t, D) valid rows only."""
    return clip_contributions(text, video[None], tau)[0]


def clip_contributions(text: Tensor, videos: Tensor, tau: float) -> Tensor:
    """c (C, n_v): each video vector's additive share of its clip's score, for C clips at once.
    text (n_t, D) valid rows; videos (C, n_v, D)."""
    sim = torch.einsum("td,cvd->tcv", text.float(), videos.float())  # (n_t, C, n_v)
    terms = alignment_terms(sim, tau)
    t2v_part = (terms["w_text"][:, :, None] * terms["spread"] * sim).sum(0)  # (C, n_v)
    return (t2v_part + terms["w_video"] * terms["b"]) / 2


def explain_clip(
    text: Tensor, matrix: np.ndarray | Tensor, start: float, end: float, frames: int, tau: float
) -> Explanation:
    """Explain one clip: text (n_t, D) valid query rows; matrix (T+K, D) the stored clip set."""
    video = torch.as_tensor(np.asarray(matrix)) if not isinstance(matrix, Tensor) else matrix
    with torch.no_grad():
        c = vector_contributions(text, video.to(text.device), tau).cpu().numpy().astype(np.float64)
    times = segment_times(start, end, frames) if end > start else [start] * frames
    frame_c = c[:frames]
    view_c = c[frames:]
    order = np.argsort(-frame_c, kind="stable")
    return Explanation(
        score=float(c.sum()),
        frames_contribution=float(frame_c.sum()),
        views_contribution=float(view_c.sum()),
        view_contributions=[float(v) for v in view_c],
        frame_times=[round(t, 3) for t in times],
        relevance=[float(v) for v in frame_c],
        top_frames=[FrameContribution(round(times[i], 3), int(i), float(frame_c[i])) for i in order],
    )
