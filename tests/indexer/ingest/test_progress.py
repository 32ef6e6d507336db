"""`t2v index add` progress: a bar on a terminal, plain log lines otherwise (in-process, no model)."""

from __future__ import annotations

import io
import sys

import pytest

from indexer.ingest.pipeline import IngestProgress, IngestResult
from service.cli.index import _Reporter


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _events() -> list[IngestProgress]:
    ok = IngestResult("/v/a.mp4", "done", 1, clips=3, seconds=0.5)
    bad = IngestResult("/v/b.mp4", "failed", reason="file is empty (0 bytes)")
    return [
        IngestProgress(files_total=2, clips_done=3, frames_done=36, elapsed=1.0),
        IngestProgress(files_total=2, files_done=1, clips_done=3, frames_done=36, elapsed=1.2, last=ok),
        IngestProgress(files_total=2, files_done=2, clips_done=3, frames_done=36, elapsed=1.5, last=bad),
    ]


def test_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    rep = _Reporter(total=2)
    assert rep.bar is None
    for e in _events():
        rep(e)
    rep.close()
    out, err = capsys.readouterr()
    assert out.splitlines() == ["[1/2] indexed: /v/a.mp4 (video 1, 3 clips, 0.5s) | 3 clips, 30 frames/s"]
    assert err.splitlines() == ["[2/2] error: /v/b.mp4: file is empty (0 bytes)"]


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    rep = _Reporter(total=2)
    assert rep.bar is not None
    for e in _events():
        rep(e)
    rep.close()
    text = tty.getvalue()
    assert "2/2" in text and "file" in text and "clips=3" in text
    assert "error: /v/b.mp4: file is empty (0 bytes)" in text
