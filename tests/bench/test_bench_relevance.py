"""`bench/bench_relevance.py` as a user runs it, on a small store of the demo model's shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from indexer.settings import DEMO_CHECKPOINT
from indexer.store import ClipSpan, NewVideo, Store, store_identity
from model import create_model
from tests.support import REPO


def test_bench_relevance_reports_which_query_vectors_reach_s10(tmp_path: Path) -> None:
    """Every caption has a vector whose best row reaches S10 (a clip's score is at most its best
    cosine, so the top clips' rows bound S10): the bench checks it and prints the table."""
    model = create_model(None, checkpoint=str(DEMO_CHECKPOINT), text_only=True)
    with Store.open(tmp_path / "store", store_identity(model), create=True) as store:
        rng = np.random.default_rng(0)
        mats = rng.standard_normal((300, store.vectors_per_clip, store.dim)).astype(np.float32)
        mats /= np.linalg.norm(mats, axis=-1, keepdims=True)
        spans = [ClipSpan(2.0 * c, 2.0 * c + 4) for c in range(10)]
        video = [NewVideo(f"/v{v}.mp4", f"v{v}", f"h{v}", 20, 25, 64, 64, "h264", 1) for v in range(30)]
        store.add_videos([(video[v], spans, mats[10 * v : 10 * v + 10]) for v in range(30)])
        store.flush()
    captions = tmp_path / "captions.jsonl"
    captions.write_text(
        "".join(json.dumps({"caption": c}) + "\n" for c in ("a red circle", "a blue box moves left"))
    )
    out = subprocess.run(
        [sys.executable, "bench/bench_relevance.py", str(tmp_path / "store"), "--data", str(captions)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "300 clips, 2 captions" in out.stdout
    row = next(x for x in out.stdout.splitlines() if x.startswith("| vectors whose best row reaches S10"))
    assert int(row.split("|")[2]) >= 1
