"""`t2v search` shows the line a moment matched ("subtitled at 0:12.00: the *purple* ...") and takes
--source; an unknown source is one `error:` line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.text.synth import subtitle_video
from tests.support import T2v

pytestmark = pytest.mark.slow  # two CLI runs that load the model: ~20 s on 2 busy cores


def test_search_prints_the_matched_line_and_takes_sources(tmp_path: Path, t2v: T2v) -> None:
    video = subtitle_video(tmp_path / "lib" / "zoo.mp4", [(12.0, 14.0, "the purple elephant dances")], 16)
    index = tmp_path / "index"
    added = t2v("index", "add", str(video), "--index", str(index))
    assert added.returncode == 0, added.stderr
    found = t2v("search", "purple elephant", "--index", str(index), "-k", "1")
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert "0:12.00-0:14.00" in lines[0] and "zoo" in lines[0]
    assert lines[1] == "    subtitled at 0:12.00: the *purple* *elephant* dances"
    visual = t2v("search", "purple elephant", "--index", str(index), "-k", "1", "--source", "visual")
    assert visual.returncode == 0 and "subtitled" not in visual.stdout
    bad = t2v("search", "x", "--index", str(index), "--source", "sound")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown source 'sound'")
