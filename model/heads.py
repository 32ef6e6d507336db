"""The training head: the authors' `DCM` adapter, used for the training logits only.

Test time scores with the partial-alignment score (`scoring.partial_alignment_scores`). Training
uses a different logit for each (text t, video v) pair, with S = Q_t X_v^T (cosines):

    a_i = sum_j softmax_j(tau S_ij) S_ij          b_j = sum_i softmax_i(tau S_ij) S_ij
    q*  = sum_i softmax_i(tau a_i) q_i            x*  = sum_j softmax_j(tau b_j) x_j
    logit(t, v) = <q*, x*>

The pooling weights depend on the pair, so q* and x* are computed per (text, video) pair;
masked rows get weight 0 in every soft-max.

What the authors' code does (mmaction/models/heads/dual_communication.py, class DCM): it
L2-normalises every input row first, then builds the two pooled vectors as convex combinations
of those unit rows and returns their plain dot product, with NO re-normalisation of q*/x*
(so |logit| <= 1 and a pair whose soft-picks are spread out gets a smaller logit). We do the
same: rows are expected L2-normalised (as `TextSets`/`VideoSets` hold them) and q*, x* are not
re-normalised. (Their variable names swap the two: `video_feat2` there is the pooled text.)
Their text padding is excluded by zeroing its cosines and then treating exact zeros as -inf;
we use the explicit masks instead (same result, except that a valid row with a cosine of
exactly 0 is not dropped).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .scoring import DEFAULT_CHUNK_ELEMENTS, pack_text, soft_alignments


def _dcm_block(
    text: Tensor, text_mask: Tensor | None, videos: Tensor, video_mask: Tensor | None, tau: float
) -> Tensor:
    # text: (Q, n_t, D); videos: (c, n_v, D) -> (Q, c)
    # a_i, b_j exactly as in the partial-alignment score; then pool the rows themselves (not a, b)
    # with pair-specific weights
    _, _, a_logits, b_logits = soft_alignments(text, text_mask, videos, video_mask, tau)
    w_text = torch.softmax(a_logits, dim=2)  # (Q, c, n_t)
    w_video = torch.softmax(b_logits, dim=2)  # (Q, c, n_v)
    q_star = torch.einsum("qni,qid->qnd", w_text, text)  # (Q, c, D)
    x_star = torch.einsum("qnj,njd->qnd", w_video, videos)  # (Q, c, D)
    return (q_star * x_star).sum(dim=-1)  # (Q, c); no re-normalisation, as the authors


def dcm_logits(
    text: Tensor,
    videos: Tensor,
    text_mask: Tensor | None = None,
    video_mask: Tensor | None = None,
    tau: float = 100.0,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Tensor:
    """Training logits <q*, x*> of every query set against every video set: (Q, N).

    text: (Q, n_t, D) L2-normalised rows, text_mask (Q, n_t) True for valid rows; videos:
    (N, n_v, D) L2-normalised rows, video_mask (N, n_v) or None (all valid). Computed in float32
    (a soft-max at tau = 100 needs it) in chunks of videos; under autograd each chunk is
    recomputed in the backward pass, so memory stays bounded by one chunk's (Q, c, n_t, n_v)
    tensors instead of growing with Q * N.
    """
    if text.dim() != 3 or videos.dim() != 3 or text.shape[-1] != videos.shape[-1]:
        raise ValueError(
            f"expected text (Q, n_t, D) and videos (N, n_v, D), got {tuple(text.shape)}, "
            f"{tuple(videos.shape)}"
        )
    text, videos = text.float(), videos.to(device=text.device, dtype=torch.float32)
    # padding rows may hold anything (even NaN): zero them so 0-weights cannot turn into NaN
    if text_mask is not None:
        text = torch.where(text_mask.unsqueeze(-1), text, text.new_zeros(()))
    if video_mask is not None:
        video_mask = video_mask.to(text.device)
        videos = torch.where(video_mask.unsqueeze(-1), videos, videos.new_zeros(()))
    text, text_mask = pack_text(text, text_mask)
    n_q, n_t, d = text.shape
    n, n_v, _ = videos.shape
    # the per-chunk tensors are (Q, c, n_t, n_v) and (Q, c, D): bound the larger one
    chunk = max(1, chunk_elements // max(1, n_q * max(n_t * n_v, d)))
    # one chunk saves nothing by recomputing
    recompute = chunk < n and torch.is_grad_enabled() and (text.requires_grad or videos.requires_grad)
    with torch.autocast(text.device.type, enabled=False):
        out = []
        for start in range(0, n, chunk):
            block = videos[start : start + chunk]
            block_mask = None if video_mask is None else video_mask[start : start + chunk]
            if recompute:
                logits = checkpoint(_dcm_block, text, text_mask, block, block_mask, tau, use_reentrant=False)
            else:
                logits = _dcm_block(text, text_mask, block, block_mask, tau)
            out.append(logits)
    if not out:
        return text.new_zeros((n_q, 0))
    return torch.cat(out, dim=1)
