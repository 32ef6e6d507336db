"""The batched, chunked score against a literal per-pair implementation of the SPEC formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model import partial_alignment_scores


def reference_score(text: list[list[float]], video: list[list[float]], tau: float) -> float:
    """Plain-Python loops over one pair; text/video hold only valid rows."""
    sim = [[sum(x * y for x, y in zip(t, v, strict=True)) for v in video] for t in text]

    def soft_pick(values: list[float]) -> float:
        m = max(values)
        w = [math.exp(tau * (x - m)) for x in values]
        z = sum(w)
        return sum(wi * x for wi, x in zip(w, values, strict=True)) / z

    a = [soft_pick(row) for row in sim]
    b = [soft_pick([sim[i][j] for i in range(len(text))]) for j in range(len(video))]
    return (soft_pick(a) + soft_pick(b)) / 2


def random_sets(q: int, n: int, n_t: int, n_v: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(q, n_t, d, generator=g, dtype=torch.float64), dim=-1)
    videos = F.normalize(torch.randn(n, n_v, d, generator=g, dtype=torch.float64), dim=-1)
    # ragged validity: every query/video keeps at least one row, holes anywhere
    text_mask = torch.rand(q, n_t, generator=g) > 0.4
    text_mask[:, 0] = True
    video_mask = torch.rand(n, n_v, generator=g) > 0.3
    video_mask[:, -1] = True
    return text, videos, text_mask, video_mask


@pytest.mark.parametrize("tau", [100.0, 5.0])
def test_batched_score_matches_per_pair_loop(tau: float) -> None:
    text, videos, tm, vm = random_sets(q=4, n=7, n_t=9, n_v=6, d=16, seed=0)
    got = partial_alignment_scores(text, videos, tm, vm, tau=tau, chunk_elements=200)
    assert got.shape == (4, 7)
    for qi in range(4):
        for ni in range(7):
            t_rows = text[qi][tm[qi]].tolist()
            v_rows = videos[ni][vm[ni]].tolist()
            want = reference_score(t_rows, v_rows, tau)
            assert got[qi, ni].item() == pytest.approx(want, abs=1e-9)


def test_float32_and_float16_storage_close_to_float64() -> None:
    text, videos, tm, _ = random_sets(q=3, n=50, n_t=12, n_v=20, d=32, seed=1)
    exact = partial_alignment_scores(text, videos, tm)
    f32 = partial_alignment_scores(text.float(), videos.half(), tm)
    assert f32.dtype == torch.float32
    assert torch.allclose(f32.double(), exact, atol=2e-3)


def test_padding_rows_never_change_a_score() -> None:
    text, videos, tm, vm = random_sets(q=2, n=5, n_t=6, n_v=4, d=8, seed=2)
    base = partial_alignment_scores(text, videos, tm, vm)
    # overwrite every padded row with garbage, and append extra padded rows
    noisy_text = torch.where(tm.unsqueeze(-1), text, torch.randn_like(text) * 50)
    noisy_videos = torch.where(vm.unsqueeze(-1), videos, torch.randn_like(videos) * 50)
    pad_t = torch.randn(2, 3, 8, dtype=torch.float64)
    pad_v = torch.randn(5, 2, 8, dtype=torch.float64)
    text2 = torch.cat([noisy_text, pad_t], dim=1)
    tm2 = torch.cat([tm, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    videos2 = torch.cat([noisy_videos, pad_v], dim=1)
    vm2 = torch.cat([vm, torch.zeros(5, 2, dtype=torch.bool)], dim=1)
    got = partial_alignment_scores(text2, videos2, tm2, vm2)
    assert torch.allclose(got, base, atol=1e-12)


def test_chunking_does_not_change_results() -> None:
    text, videos, tm, vm = random_sets(q=3, n=40, n_t=5, n_v=7, d=8, seed=3)
    whole = partial_alignment_scores(text, videos, tm, vm, chunk_elements=1 << 30)
    tiny_chunks = partial_alignment_scores(text, videos, tm, vm, chunk_elements=1)
    assert torch.allclose(whole, tiny_chunks, atol=1e-12, rtol=0)


def test_single_text_vector_reduces_to_softmax_pooling() -> None:
    text, videos, _, _ = random_sets(q=1, n=6, n_t=1, n_v=5, d=8, seed=4)
    sims = torch.einsum("d,nvd->nv", text[0, 0], videos)  # (N, n_v)
    pooled = (torch.softmax(100 * sims, dim=1) * sims).sum(1)
    assert torch.allclose(partial_alignment_scores(text, videos)[0], pooled, atol=1e-12)


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="dimension mismatch"):
        partial_alignment_scores(torch.zeros(1, 2, 8), torch.zeros(3, 4, 9))
    with pytest.raises(ValueError, match="expected text"):
        partial_alignment_scores(torch.zeros(2, 8), torch.zeros(3, 4, 8))
