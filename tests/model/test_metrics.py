"""Retrieval metrics against hand-computed examples."""

from __future__ import annotations

import pytest
import torch

from model.metrics import retrieval_metrics, summarize_ranks, t2v_ranks, v2t_ranks


def test_t2v_ranks_hand_computed() -> None:
    # 3 captions x 4 clips; caption q belongs to clip [0, 2, 3][q]
    s = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.2],  # own clip 0 is best -> rank 1
            [0.3, 0.8, 0.6, 0.7],  # own clip 2 (0.6) is behind 0.8 and 0.7 -> rank 3
            [0.5, 0.4, 0.3, 0.2],  # own clip 3 is last -> rank 4
        ]
    )
    assert t2v_ranks(s, [0, 2, 3]).tolist() == [1, 3, 4]
    m = retrieval_metrics(s, [0, 2, 3])["t2v"]
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["R@5"] == 100.0 and m["R@10"] == 100.0
    assert m["MdR"] == 3.0
    assert m["MnR"] == pytest.approx(8 / 3)


def test_ties_break_towards_lower_index() -> None:
    s = torch.full((2, 3), 0.5)  # a constant scorer
    # caption 0 -> clip 0 wins the tie (rank 1); caption 1 -> clip 2 is behind clips 0 and 1
    assert t2v_ranks(s, [0, 2]).tolist() == [1, 3]
    # the same input always gives the same ranks
    assert t2v_ranks(s, [0, 2]).tolist() == t2v_ranks(s.clone(), [0, 2]).tolist()


def test_v2t_uses_best_own_caption() -> None:
    # 4 captions, 2 clips; captions 0,1 -> clip 0, captions 2,3 -> clip 1
    s = torch.tensor(
        [
            [0.2, 0.9],
            [0.7, 0.1],
            [0.8, 0.3],
            [0.1, 0.4],
        ]
    )
    # clip 0 column: [0.2, 0.7, 0.8, 0.1]; its best caption (1, 0.7) is behind caption 2 -> rank 2
    # clip 1 column: [0.9, 0.1, 0.3, 0.4]; its best caption (3, 0.4) is behind caption 0 -> rank 2
    assert v2t_ranks(s, [0, 0, 1, 1]).tolist() == [2, 2]
    m = retrieval_metrics(s, [0, 0, 1, 1])["v2t"]
    assert m["R@1"] == 0.0 and m["R@5"] == 100.0 and m["MnR"] == 2.0


def test_v2t_skips_clips_without_captions() -> None:
    s = torch.tensor([[0.1, 0.9, 0.5]])  # one caption of clip 1; clips 0 and 2 have none
    assert v2t_ranks(s, [1]).tolist() == [1]


def test_median_of_even_count_and_recall_cutoffs() -> None:
    m = summarize_ranks(torch.tensor([1, 2, 6, 11]))
    assert m["MdR"] == 4.0  # (2 + 6) / 2
    assert m["R@1"] == 25.0 and m["R@5"] == 50.0 and m["R@10"] == 75.0
    assert m["MnR"] == 5.0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="captions"):
        retrieval_metrics(torch.zeros(3, 2), [0, 1])
