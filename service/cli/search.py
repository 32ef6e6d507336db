"""`t2v search`: moments of a local store, or of a running service with `--server`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from service.cli.common import fail, format_time
from service.cli.store_access import (
    CKPT_HELP,
    CONFIG_HELP,
    INDEX_HELP,
    index_dir_of,
    indexer_settings,
    load_model,
    open_store,
    require_store,
)
from service.cli.words import match_lines

if TYPE_CHECKING:
    from indexer.search.searcher import ScoredMoment, SearchResult

# `--json` speaks the REST vocabulary (POST /v1/search): results, took_ms, stages_ms; a grouped
# result's other moments of the same video are its `more`. Local-only fields: clip_id and path of
# each moment, and `candidates` (clips scored exactly). No thumbnail/stream URLs: there is no server.
JsonValue = float | int | str | list["JsonMoment"]
JsonMoment = dict[str, JsonValue]


def search(
    query: str = typer.Argument(..., help="free-text query"),
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1, max=1000),
    group_by_video: bool = typer.Option(False, "--group-by-video", help="best moments per video"),
    video_id: list[int] | None = typer.Option(None, "--video-id", help="only these videos (repeatable)"),
    min_score: float | None = typer.Option(None, help="drop moments scoring below this"),
    exhaustive: bool = typer.Option(False, help="score every clip exactly (slow; for checking)"),
    source: list[str] | None = typer.Option(
        None, "--source", help="rankings to fuse: visual, subtitles, speech, ocr (repeatable; default all)"
    ),
    config: str | None = typer.Option(None, help=CONFIG_HELP),
    checkpoint: Path | None = typer.Option(None, help=CKPT_HELP),
    device: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    server: str | None = typer.Option(None, "--server", help="search a running service at this URL"),
    api_key: str | None = typer.Option(None, "--api-key", help="X-API-Key for --server"),
) -> None:
    """Search an index for moments (two-stage: FAISS candidates, exact partial-alignment rerank)."""
    if not query.strip():
        fail("the query is empty")
    if server is not None:  # a remote service does the search (service/cli/remote.py)
        from service.cli.remote import remote_search

        ids = video_id or None
        remote_search(server, api_key, query, top_k, group_by_video, ids, min_score, as_json, source or None)
        return
    from indexer.search.fusion import check_sources, fused_search
    from indexer.search.searcher import Searcher

    try:
        check_sources(source or None)
    except ValueError as e:
        fail(str(e))
    settings = indexer_settings()
    index_dir = index_dir_of(index, settings)
    require_store(index_dir)
    model = load_model(index_dir, config, checkpoint, device, settings, text_only=True)
    store = open_store(index_dir, model)
    try:
        searcher = Searcher(store, model)
        if exhaustive:
            result = searcher.search(query, top_k, group_by_video, video_id or None, min_score, exhaustive)
        else:  # what is seen, said and written, fused (indexer/search/fusion.py)
            result = fused_search(
                searcher,
                query,
                sources=source or None,
                top_k=top_k,
                group_by_video=group_by_video,
                video_ids=video_id or None,
                min_score=min_score,
            )
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(json_result(result), indent=2))
        return
    if not result.moments:
        typer.echo("no results")
        return
    if result.groups is not None:
        for g in result.groups:
            typer.echo(f"{g.score:.4f}  video {g.video_id}  {g.title}  ({g.path})")
            for m in g.moments:
                typer.echo(f"    {m.score:.4f}  {format_time(m.start)}-{format_time(m.end)}")
                for line in match_lines(getattr(m, "matches", ()), query, "        "):
                    typer.echo(line)
    else:
        for m in result.moments:
            span = f"{format_time(m.start)}-{format_time(m.end)}"
            typer.echo(f"{m.score:.4f}  video {m.video_id}  {span}  {m.title}  ({m.path})")
            for line in match_lines(getattr(m, "matches", ()), query):
                typer.echo(line)
    t = result.timings_ms
    typer.echo(
        f"({result.candidates} candidates; encode {t['encode']:.0f} ms, candidates "
        f"{t['candidates']:.0f} ms, rerank {t['rerank']:.0f} ms)",
        err=True,
    )


def _moment(m: ScoredMoment) -> JsonMoment:
    return {
        "video_id": m.video_id,
        "clip_id": m.clip_id,
        "title": m.title,
        "path": m.path,
        "start": m.start,
        "end": m.end,
        "score": m.score,
    }


def json_result(result: SearchResult) -> dict[str, object]:
    """A local search in the shape of the REST SearchResponse (see the comment at the top)."""
    if result.groups is not None:
        results = [
            {**_moment(g.moments[0]), "more": [_moment(m) for m in g.moments[1:]]} for g in result.groups
        ]
    else:
        results = [_moment(m) for m in result.moments]
    t = result.timings_ms
    return {
        "query": result.query,
        "results": results,
        "took_ms": round(t.get("total", sum(t.values())), 3),
        "stages_ms": {k: round(v, 3) for k, v in t.items() if k != "total"},
        "candidates": result.candidates,
    }
