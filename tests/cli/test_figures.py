"""`t2v explain` and `t2v inspect-tokens` as a user runs them: PNGs of the documented size with
real content (a drawn heat map, not a blank canvas), and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.corpora.synthetic import render_demo_library
from indexer.report.figures import DPI, FIG_H, FIG_W
from indexer.settings import DEMO_CHECKPOINT
from tests.support import T2v

SIZE = (int(FIG_W * DPI), int(FIG_H * DPI))
pytestmark = [
    pytest.mark.slow,  # three figure runs with the demo model
    pytest.mark.skipif(not DEMO_CHECKPOINT.exists(), reason=f"needs {DEMO_CHECKPOINT}"),
]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_demo_library(tmp_path_factory.mktemp("lib"))[0].path


def _check_png(path: Path) -> np.ndarray:
    img = Image.open(path)
    assert img.format == "PNG" and img.size == SIZE
    px = np.asarray(img.convert("RGB"), dtype=np.float32)
    # not blank: many distinct colours and real contrast (frames + a colour-mapped matrix)
    assert px.std() > 20
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 200
    return px


def test_explain_png(video: Path, tmp_path: Path, t2v: T2v) -> None:
    out = tmp_path / "explain.png"
    r = t2v(
        "explain",
        "a red circle moving left",
        str(video),
        "--checkpoint",
        str(DEMO_CHECKPOINT),
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "score" in r.stdout and "x20 matrix" in r.stdout  # T + K = 12 + 8 video vectors
    px = _check_png(out)
    # the heat map (lower half) uses the colour map: far from the white background
    lower = px[SIZE[1] // 2 :, : SIZE[0] * 3 // 4]
    assert (lower.sum(axis=2) < 600).mean() > 0.2


def test_inspect_tokens_png(video: Path, tmp_path: Path, t2v: T2v) -> None:
    out = tmp_path / "tokens.png"
    r = t2v("inspect-tokens", str(video), "--checkpoint", str(DEMO_CHECKPOINT), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "8 tokens x 12 frames" in r.stdout
    _check_png(out)


def test_bad_input_is_a_clear_error(tmp_path: Path, t2v: T2v) -> None:
    r = t2v("inspect-tokens", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "no such video file" in r.stderr
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    r = t2v("explain", "q", str(bad), "--checkpoint", str(DEMO_CHECKPOINT), "-o", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.png").exists()
