"""Text tracks without a server: subtitle parsing and sidecars, the FTS5 query language, and the store
part (lines committed with their video, hidden by rm, dropped by compact, checked by verify)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexer.store import ClipSpan, NewVideo, Store
from indexer.store.texttracks import match_expression
from indexer.text import TextLine, TextSettings, TrackReport, VideoText, extract_text
from indexer.text.subtitles import parse_cues, sidecars
from indexer.text.synth import speech_video, subtitle_video

IDENTITY = {"dim": 8, "vectors_per_clip": 3, "name": "text-test", "config": {"tau": 100.0}}


def test_srt_and_vtt_cues_parse_with_times_and_without_markup() -> None:
    srt = (
        "1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> {\\an8}there\r\nsecond row\r\n\r\n"
        "2\r\n00:01:02,05 --> 00:01:03,000\r\nbye\r\n"
    )
    assert parse_cues(srt) == [
        TextLine("subtitles", 1.0, 2.5, "Hello there second row"),
        TextLine("subtitles", 62.05, 63.0, "bye"),
    ]
    vtt = (
        "WEBVTT\n\nNOTE a comment\n\ncue-1\n00:04.500 --> 00:06.000 align:start\n"
        "<c.yellow>words</c> here\n\n00:07.000 --> 00:07.000\n\n"
    )
    assert parse_cues(vtt) == [TextLine("subtitles", 4.5, 6.0, "words here")]


def test_sidecars_are_the_videos_own(tmp_path: Path) -> None:
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"x")
    for name in ["talk.srt", "talk.en.srt", "talk.de.vtt", "talk.extra.en.srt", "talks.srt", "other.srt"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in sidecars(video)] == ["talk.de.vtt", "talk.en.srt", "talk.srt"]


def test_query_language_quotes_phrases_and_escapes_syntax() -> None:
    assert match_expression("kitchen tour") == '"kitchen" OR "tour"'
    assert match_expression('the "grand opening" today') == '"grand opening" AND ("the" OR "today")'
    assert match_expression('"exact words"') == '"exact words"'
    assert match_expression("a* OR NEAR(b) -c:d") == '"a" OR "OR" OR "NEAR" OR "b" OR "c" OR "d"'
    assert match_expression('"" ...') is None


def test_embedded_track_and_sidecar_are_read_once_each(tmp_path: Path) -> None:
    cues = [(1.0, 2.5, "the purple elephant"), (4.0, 5.0, "second line")]
    video = subtitle_video(tmp_path / "v.mp4", cues, seconds=6, sidecar=".en.vtt")
    text = extract_text(video, TextSettings())
    # the same cues embedded and beside the file are kept once
    assert [(ln.start, ln.end, ln.text) for ln in text.lines] == cues
    reports = {r.source: r for r in text.reports}
    assert reports["subtitles"].status == "found" and "mov_text" in reports["subtitles"].reason
    assert "v.en.vtt: 2 cues" in reports["subtitles"].reason
    assert reports["ocr"].status == "skipped" and "T2V_TEXT__OCR" in reports["ocr"].reason


def test_whisper_without_weights_is_a_clear_skip_never_a_download(tmp_path: Path) -> None:
    video = speech_video(tmp_path / "s.mp4", [(0.2, "hello")], seconds=1.5)
    settings = TextSettings(speech=True, asr_engine="whisper", asr_model=tmp_path / "no-model")
    report = {r.source: r for r in extract_text(video, settings).reports}["speech"]
    assert (
        report.status == "skipped" and f"no faster-whisper model at {tmp_path / 'no-model'}" in report.reason
    )
    assert not (tmp_path / "no-model").exists()


def _unit(n: int) -> np.ndarray:
    x = np.random.default_rng(n).normal(size=(n, 3, 8))
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _video(name: str) -> NewVideo:
    return NewVideo(f"/v/{name}.mp4", name, name * 8, 20.0, 8.0, 64, 48, "h264", 100)


def test_store_commits_searches_hides_and_compacts_text(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", IDENTITY, create=True)
    spans = [ClipSpan(0, 10), ClipSpan(5, 15), ClipSpan(10, 20)]
    said = VideoText(
        [TextLine("speech", 12.0, 13.5, "welcome to the kitchen"), TextLine("ocr", 2.0, 3.0, "EXIT")],
        [TrackReport("speech", "found", 1), TrackReport("ocr", "found", 1)],
    )
    subs = VideoText([TextLine("subtitles", 1.0, 2.0, "the kitchen is closed")])
    a = store.add_video(_video("a"), spans, _unit(3), said)
    b = store.add_video(_video("b"), spans, _unit(3), subs)
    assert store.has_text()
    hits = store.text_search("kitchen welcome")
    assert [(h.video_id, h.source, h.start) for h in hits] == [(a, "speech", 12.0), (b, "subtitles", 1.0)]
    assert [h.video_id for h in store.text_search('"kitchen is"')] == [b]
    assert [h.video_id for h in store.text_search("kitchen", sources=["ocr", "speech"])] == [a]
    assert store.text_search("kitchen", video_ids=[b])[0].video_id == b
    assert [r.source for r in store.text_tracks(a)] == ["ocr", "speech"]
    assert store.verify().ok
    store.remove_video(a)
    assert [h.video_id for h in store.text_search("kitchen")] == [b]
    store.compact()
    assert store.text_lines(a) == [] and store.text_tracks(a) == []
    assert store.verify().ok, store.verify().problems
    store.close()
    # a torn FTS index (a line changed behind its back) is reported by verify
    db = sqlite3.connect(tmp_path / "s" / "meta.sqlite")
    db.execute("UPDATE text_lines SET text = 'something else'")
    db.commit()
    db.close()
    with Store.open(tmp_path / "s") as store:
        report = store.verify()
    assert not report.ok and any("text_fts" in p for p in report.problems)


def test_a_failed_commit_stores_no_text(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", IDENTITY, create=True)
    text = VideoText([TextLine("subtitles", 0.0, 1.0, "only once")])
    store.add_video(_video("a"), [ClipSpan(0, 5)], _unit(1), text)
    with pytest.raises(Exception, match="already indexed"):
        store.add_video(_video("a"), [ClipSpan(0, 5)], _unit(1), text)  # same content hash
    assert len(store.text_search("once")) == 1
    store.close()


def test_a_line_counts_only_when_it_holds_half_the_querys_content_words() -> None:
    from indexer.search.fusion import covers

    assert covers("the purple elephant dances", "purple elephant")
    assert covers("oh morning everybody", "good morning everybody")  # ASR missed a word
    assert not covers("the train leaves platform nine", "a red circle moving left then a train")
    assert covers("the end", "the") and not covers("an end", "the")  # a query of stop words only
    assert covers("whatever FTS5 found", '"exact phrase"')  # quoted: FTS5 required the phrase
