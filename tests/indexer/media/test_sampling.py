"""The selective sampler returns exactly what the reference full pass returns, only faster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.corpora.lavfi import render_lavfi
from indexer.media.sampling import sample_frames_selective, select_expression
from indexer.media.video import probe, sample_frames
from model.backbone import PreprocessCfg


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sampling") / "bars.mp4"
    return render_lavfi(out, "testsrc2=s=128x96:d=6:r=30")


@pytest.fixture(scope="module")
def pre() -> PreprocessCfg:
    from model import create_model

    return create_model("t2v-tiny", text_only=True).backbone.preprocess  # the weights' own


@pytest.mark.parametrize("fps_hint", ["probed", "wrong"])
def test_selective_equals_full_pass(clip: Path, pre: PreprocessCfg, fps_hint: str) -> None:
    info = probe(clip)
    # frame-boundary times (k/30), times between frames, before the first and after the last frame
    times = sorted(
        {0.0, 1 / 30, 2 / 30 + 1e-9, 0.5, 1.2345, 3.3333333, 5.99, 6.5, *np.linspace(0.1, 5.9, 17)}
    )
    # a wrong (too high) fps shrinks the guard so the exactness check fails: the full pass is used
    fps = info.fps if fps_hint == "probed" else info.fps * 50
    ref = sample_frames(clip, times, pre)
    got = sample_frames_selective(clip, times, pre, fps)
    assert got.pts == ref.pts
    np.testing.assert_array_equal(got.frames, ref.frames)
    assert len(set(got.pts)) > 15  # the times really pick different frames


def test_select_expression_merges_and_bisects() -> None:
    expr = select_expression([1.0, 1.01, 5.0], guard=0.05)
    assert expr.startswith(
        "eq(n,0)+if(lt(t,4.950000),between(t,0.950000,1.010010),between(t,4.950000,5.000010))"
    )
