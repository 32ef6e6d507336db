"""The partial-alignment score (no learned parameters), batched and chunked.

This is both the training logit and the service's exact rerank kernel, so it scores Q query
sets against N stored video sets in chunks of videos: the (Q, N, n_t, n_v) cosine tensor is
never built whole.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Elements of the per-chunk cosine tensor (Q * chunk * n_t * n_v); 2**22 floats = 16 MiB.
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def _soft_pick(logits: Tensor, values: Tensor, dim: int) -> Tensor:
    """sum over `dim` of softmax(logits) * values; masked logits are -inf (weight 0)."""
    weights = torch.softmax(logits, dim=dim)
    return (weights * values).sum(dim=dim)


def pack_text(text: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Move each query's valid rows to the front and drop columns that are padding everywhere.

    text: (Q, n_t, D), mask: (Q, n_t) bool -> (Q, n_max, D), (Q, n_max) where n_max is the
    largest number of valid rows; makes scoring cost follow real query length, not context length.
    """
    if mask is None:
        return text, None
    counts = mask.sum(dim=1)  # (Q,)
    n_max = int(counts.max().item()) if counts.numel() else 0
    n_max = max(n_max, 1)
    # stable sort puts valid rows first, keeping their order
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :n_max]  # (Q, n_max)
    packed = torch.gather(text, 1, order.unsqueeze(-1).expand(-1, -1, text.shape[-1]))
    packed_mask = torch.gather(mask, 1, order)
    if bool(packed_mask.all()):
        return packed, None
    return packed, packed_mask


def soft_alignments(
    text: Tensor, text_mask: Tensor | None, videos: Tensor, video_mask: Tensor | None, tau: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The soft picks of the partial-alignment score for one chunk of videos, and their pooling logits.

    text: (Q, n_t, D); videos: (c, n_v, D) -> a (Q, c, n_t), b (Q, c, n_v), tau * a, tau * b (the
    logits: padding rows at the dtype's minimum, i.e. weight 0 in a soft-max). Shared by the score
    and the training head (`heads.dcm_logits`), which pools differently.
    """
    sim = torch.einsum("qid,njd->qnij", text, videos)  # (Q, c, n_t, n_v)
    neg_inf = torch.finfo(sim.dtype).min
    logits = sim * tau
    row_pad = None if text_mask is None else ~text_mask[:, None, :, None]  # (Q, 1, n_t, 1)
    col_pad = None if video_mask is None else ~video_mask[None, :, None, :]  # (1, c, 1, n_v)

    # a_i: each text vector softly picks its best video vector (softmax over j)
    logits_j = logits if col_pad is None else logits.masked_fill(col_pad, neg_inf)
    a = _soft_pick(logits_j, sim, dim=3)  # (Q, c, n_t)
    # b_j: each video vector softly picks its best text vector (softmax over valid i)
    logits_i = logits if row_pad is None else logits.masked_fill(row_pad, neg_inf)
    b = _soft_pick(logits_i, sim, dim=2)  # (Q, c, n_v)

    a_logits = a * tau
    if text_mask is not None:
        a_logits = a_logits.masked_fill(~text_mask[:, None, :], neg_inf)
    b_logits = b * tau
    if video_mask is not None:
        b_logits = b_logits.masked_fill(~video_mask[None, :, :], neg_inf)
    return a, b, a_logits, b_logits


def _score_block(
    text: Tensor, text_mask: Tensor | None, videos: Tensor, video_mask: Tensor | None, tau: float
) -> Tensor:
    # text: (Q, n_t, D); videos: (c, n_v, D) -> (Q, c)
    a, b, a_logits, b_logits = soft_alignments(text, text_mask, videos, video_mask, tau)
    t2v = _soft_pick(a_logits, a, dim=2)  # (Q, c)
    v2t = _soft_pick(b_logits, b, dim=2)  # (Q, c)
    return (t2v + v2t) / 2


def partial_alignment_scores(
    text: Tensor,
    videos: Tensor,
    text_mask: Tensor | None = None,
    video_mask: Tensor | None = None,
    tau: float = 100.0,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Tensor:
    """Scores of every query set against every video set.

    text: (Q, n_t, D) L2-normalised rows; text_mask: (Q, n_t) True for valid rows.
    videos: (N, n_v, D) L2-normalised rows (float16 allowed: computed in text's dtype);
    video_mask: (N, n_v) True for valid rows (None: all valid). Returns (Q, N).
    """
    if text.dim() != 3 or videos.dim() != 3:
        raise ValueError(
            f"expected text (Q, n_t, D) and videos (N, n_v, D), got {tuple(text.shape)}, "
            f"{tuple(videos.shape)}"
        )
    if text.shape[-1] != videos.shape[-1]:
        raise ValueError(f"dimension mismatch: text D={text.shape[-1]}, videos D={videos.shape[-1]}")
    text, text_mask = pack_text(text, text_mask)
    n_q, n_t, _ = text.shape
    n, n_v, _ = videos.shape
    chunk = max(1, chunk_elements // max(1, n_q * n_t * n_v))
    out = []
    for start in range(0, n, chunk):
        block = videos[start : start + chunk].to(device=text.device, dtype=text.dtype)
        block_mask = None
        if video_mask is not None:
            block_mask = video_mask[start : start + chunk].to(text.device)
        out.append(_score_block(text, text_mask, block, block_mask, tau))
    if not out:
        return text.new_zeros((n_q, 0))
    return torch.cat(out, dim=1)


# Clips per block of the CPU rerank kernel: the block's fp32 rows (64 x n_v x D) stay in cache and
# reuse one buffer. Measured on a 2-core EPYC, 1 thread, 1,000 ViT-B/32 clips: 6.8 ms at 64 against
# 27.5 ms at 2048, where each block's fresh 80 MB fp32 copy cost page faults (15 ms for the copy alone).
CPU_RERANK_BLOCK = 64


def rerank_block(text: Tensor) -> int:
    """Clips per block `one_query_scores` takes by default for these query rows (n_t, D)."""
    return CPU_RERANK_BLOCK if text.device.type == "cpu" and text.dtype == torch.float32 else 2048


def one_query_scores(text: Tensor, videos: Tensor, tau: float = 100.0, block: int | None = None) -> Tensor:
    """Partial-alignment scores of ONE query set against N video sets: (N,).

    text: (n_t, D) valid rows only; videos: (N, n_v, D), float16 allowed. The serving fast path:
    one GEMM of the query rows against every gathered video row per block (no (Q, N, ...) batch
    dims, no padding masks), the same value as `partial_alignment_scores` up to rounding.
    block: clips per block (None: CPU_RERANK_BLOCK on a CPU, 2048 on an accelerator). On a CPU in
    float32 the blocks are converted into one reused buffer.
    """
    n, n_v, d = videos.shape
    cpu = text.device.type == "cpu" and text.dtype == torch.float32
    block = block or rerank_block(text)
    out = torch.empty(n, dtype=text.dtype, device=text.device)
    buf = torch.empty(min(block, n) * n_v, d) if cpu else None  # (block * n_v, D) fp32, reused
    for start in range(0, n, block):
        chunk = videos[start : start + block]
        c = len(chunk)
        if buf is not None:
            rows = buf[: c * n_v]
            rows.copy_(chunk.reshape(-1, d))  # float16 -> float32 in place
        else:
            rows = chunk.reshape(-1, d).to(device=text.device, dtype=text.dtype)
        # query rows on the left: 1.35x faster than rows @ text.T with MKL on the EPYC test box
        sim = torch.mm(text, rows.T).view(-1, c, n_v)  # (n_t, c, n_v)
        out[start : start + c] = alignment_terms(sim, tau)["score"]
    return out


def alignment_terms(sim: Tensor, tau: float) -> dict[str, Tensor]:
    """The partial-alignment score of one query against C clips and its terms, from the
    similarities sim (n_t, C, n_v) of the query's valid rows to each clip's rows: spread (n_t, C,
    n_v) how each text row spreads over its clip's video rows, a (n_t, C), b (C, n_v), the t2v
    weights over text rows w_text (n_t, C), the v2t weights over video rows w_video (C, n_v), t2v,
    v2t and score (C,). The one formula behind the rerank kernel and the explanations."""
    logits = sim * tau
    spread = torch.softmax(logits, dim=2)
    a = (spread * sim).sum(2)  # (n_t, C): each text row picks video rows
    b = (torch.softmax(logits, dim=0) * sim).sum(0)  # (C, n_v): each video row picks text rows
    w_text = torch.softmax(a * tau, dim=0)
    w_video = torch.softmax(b * tau, dim=1)
    t2v = (w_text * a).sum(0)  # (C,)
    v2t = (w_video * b).sum(1)  # (C,)
    terms = {"spread": spread, "a": a, "b": b, "w_text": w_text, "w_video": w_video}
    return terms | {"t2v": t2v, "v2t": v2t, "score": (t2v + v2t) / 2}


def score_matrix_components(text: Tensor, video: Tensor, tau: float = 100.0) -> dict[str, Tensor]:
    """All intermediate quantities for ONE (text set, video set) pair, for explanations.

    text: (n_t, D) valid rows only; video: (n_v, D). Returns sim (n_t, n_v), a (n_t,), b (n_v,),
    the t2v weights over text rows, the v2t weights over video rows, t2v, v2t and score.
    """
    sim = text @ video.T  # (n_t, n_v)
    terms = alignment_terms(sim[:, None], tau)  # one clip
    pair = {"sim": sim, "a": terms["a"][:, 0], "b": terms["b"][0], "w_text": terms["w_text"][:, 0]}
    return pair | {k: terms[k][0] for k in ("w_video", "t2v", "v2t", "score")}
