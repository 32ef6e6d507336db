"""The committed demo model finds the right demo-library video for scene queries, offline."""

from __future__ import annotations

import pytest
import torch

from indexer.corpora.synthetic import render_demo_library
from indexer.media.video import probe, sample_frames, segment_times, to_model_input
from indexer.settings import DEMO_CHECKPOINT
from model import create_model, read_checkpoint

pytestmark = pytest.mark.skipif(not DEMO_CHECKPOINT.is_file(), reason="demo/t2v-demo.pt not trained yet")


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[list[int]], list[int]]:
    """(queries, ranking of video indices per query, right video per query); the scene queries
    first, then one whole-video caption per video ("a red circle moving left, then ...")."""
    model = create_model(None, checkpoint=DEMO_CHECKPOINT)
    pre, t = model.backbone.preprocess, model.config.frames
    lib = render_demo_library(tmp_path_factory.mktemp("lib"), seed=0)
    clips = []
    for v in lib:  # the indexer's path: probe, T segment middles, one decode pass
        times = segment_times(0.0, probe(v.path).duration, t)
        clips.append(to_model_input(sample_frames(v.path, times, pre).frames, pre))
    # short scene queries as a user types them: "a red circle moving left"
    queries, right = [], []
    for i, v in enumerate(lib):
        for s in v.scenes:
            queries.append(s.caption.split(" on a ")[0])
            right.append(i)
    for i, v in enumerate(lib):
        queries.append(v.caption)
        right.append(i)
    with torch.no_grad():
        videos = model.encode_videos(torch.stack(clips)).vectors  # (N, T+K, D)
        scores = model.score(model.encode_texts(queries), videos)  # (Q, N)
    ranking = torch.argsort(scores, dim=1, descending=True, stable=True).tolist()
    return queries, ranking, right


def test_demo_checkpoint_is_small_and_self_describing() -> None:
    assert DEMO_CHECKPOINT.stat().st_size < 25 * 1024 * 1024
    cfg, _, _ = read_checkpoint(DEMO_CHECKPOINT)
    assert cfg.mode == "trained" and cfg.pretrained is None  # nothing to download


def test_most_scene_queries_rank_their_video_first(
    ranked: tuple[list[str], list[list[int]], list[int]],
) -> None:
    queries, ranking, right = ranked
    scenes = [i for i, q in enumerate(queries) if ", then " not in q]
    top1 = sum(ranking[i][0] == right[i] for i in scenes) / len(scenes)
    top3 = sum(right[i] in ranking[i][:3] for i in scenes) / len(scenes)
    # chance is 1/10 for top-1; the bars sit below what the committed model measures (docs/RESULTS.md)
    assert top1 >= 0.4, f"top-1 {top1:.2f}"
    assert top3 >= 0.85, f"top-3 {top3:.2f}"


def test_whole_video_captions_rank_their_video_first(
    ranked: tuple[list[str], list[list[int]], list[int]],
) -> None:
    """The scene order a user describes ("..., then ...") finds the video that has it."""
    queries, ranking, right = ranked
    whole = [i for i, q in enumerate(queries) if ", then " in q]
    assert len(whole) == 10
    top1 = sum(ranking[i][0] == right[i] for i in whole) / len(whole)
    assert top1 >= 0.8, f"top-1 {top1:.2f}"  # 10 of 10 measured (docs/RESULTS.md); chance 1/10
