"""`t2v index add|rm|list|stats|verify|reindex|compact`: the offline indexer's CLI.

Exit codes follow service/cli/common.py. Heavy imports (torch, faiss) happen inside the commands so
`t2v --help` stays fast.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from service.cli.common import EXIT_SOME_FAILED, CliTyper, fail
from service.cli.store_access import (
    CKPT_HELP,
    CONFIG_HELP,
    INDEX_HELP,
    index_dir_of,
    indexer_settings,
    load_model_and_path,
    open_store,
    require_store,
)

if TYPE_CHECKING:
    from tqdm import tqdm

    from indexer.ingest.pipeline import IngestItem, IngestProgress, IngestResult
    from indexer.settings import IndexerSettings
    from indexer.store import Store
    from model import T2VParser

index_app = CliTyper(
    help="Build and maintain a video index (store directory).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class _Reporter:
    """A progress bar on a terminal, plain log lines otherwise; per-file errors always on stderr."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total = total
        self.quiet = quiet
        self.bar: tqdm | None = None
        if sys.stderr.isatty() and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, p: IngestProgress) -> None:
        r = p.last
        if self.bar is not None:
            self.bar.set_postfix(clips=p.clips_done, fps=f"{p.frames_per_second:.0f}", refresh=False)
            if r is not None:
                self.bar.update(1)
                if r.status == "failed":
                    self.bar.write(f"error: {r.path}: {r.reason}", file=sys.stderr)
            return
        if r is None:
            return
        line = _result_line(r)
        if r.status == "failed":
            typer.echo(f"[{p.files_done}/{self.total}] {line}", err=True)
        elif not self.quiet:
            typer.echo(
                f"[{p.files_done}/{self.total}] {line} | {p.clips_done} clips, "
                f"{p.frames_per_second:.0f} frames/s"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _result_line(r: IngestResult) -> str:
    if r.status == "done":
        return f"indexed: {r.path} (video {r.video_id}, {r.clips} clips, {r.seconds:.1f}s)"
    if r.status == "duplicate":
        return f"duplicate: {r.path}: {r.reason}"
    return f"error: {r.path}: {r.reason}"


def _summary(results: list[IngestResult], seconds: float) -> tuple[str, int]:
    done = sum(r.status == "done" for r in results)
    dup = sum(r.status == "duplicate" for r in results)
    failed = [r for r in results if r.status == "failed"]
    clips = sum(r.clips for r in results)
    text = (
        f"summary: {done} indexed ({clips} clips), {dup} duplicate, {len(failed)} failed "
        f"of {len(results)} files in {seconds:.1f}s"
    )
    return text, len(failed)


def _run_ingest(
    store: Store, model: T2VParser, items: list[IngestItem], settings: IndexerSettings, quiet: bool = False
) -> tuple[list[IngestResult], float]:
    from indexer.ingest.pipeline import Ingestor

    ingestor = Ingestor.from_settings(store, model, settings)
    reporter = _Reporter(len(items), quiet)
    t0 = time.perf_counter()
    try:
        results = ingestor.ingest_many(items, on_progress=reporter)
    finally:
        reporter.close()
    return results, time.perf_counter() - t0


def _run_ray_ingest(
    store: Store,
    model: T2VParser,
    items: list[IngestItem],
    settings: IndexerSettings,
    address: str | None,
    checkpoint: Path | None,
    quiet: bool = False,
) -> tuple[list[IngestResult], float]:
    """`--ray`: the same ingestion as a Ray Data pipeline (indexer.ingest.distributed; Ray imported here)."""
    from indexer.ingest.distributed import RayIngestor, RayOptions

    reporter = _Reporter(len(items), quiet)
    t0 = time.perf_counter()
    try:
        ingestor = RayIngestor.from_settings(store, model, settings, RayOptions(address=address), checkpoint)
        results = ingestor.ingest_many(items, on_progress=reporter)
    finally:
        reporter.close()
    return results, time.perf_counter() - t0


@index_app.command("add")
def add(
    paths: list[Path] = typer.Argument(..., help="video files, folders (recursive) or *.jsonl manifests"),
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    config: str | None = typer.Option(None, help=CONFIG_HELP),
    checkpoint: Path | None = typer.Option(None, help=CKPT_HELP),
    device: str | None = typer.Option(None, help="'auto', 'cpu' or 'cuda[:N]'"),
    window: float | None = typer.Option(None, help="clip window in seconds (T2V_WINDOW)"),
    stride: float | None = typer.Option(None, help="step between windows in seconds (T2V_STRIDE)"),
    batch_size: int | None = typer.Option(None, help="clips per encoder batch (T2V_BATCH_SIZE)"),
    title: str | None = typer.Option(None, help="title for a single file (default: file name)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the summary"),
    ray: bool = typer.Option(False, "--ray", help="run as a Ray Data pipeline (extra [distributed])"),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to join (implies --ray; default: a local instance)"
    ),
    frame_encoder: str | None = typer.Option(
        None,
        "--frame-encoder",
        help="image tower on a CPU: 'torch' or 'onnx-fp32' (ONNX Runtime, ~2x faster; T2V_FRAME_ENCODER)",
    ),
) -> None:
    """Index videos into the store (created on first use); already indexed files are skipped."""
    from indexer.ingest.pipeline import IngestItem, expand_paths
    from indexer.settings import FRAME_ENCODERS

    settings = indexer_settings(window, stride, batch_size)
    index_dir = index_dir_of(index, settings)
    if frame_encoder is not None and frame_encoder not in FRAME_ENCODERS:
        fail(f"--frame-encoder must be one of {', '.join(FRAME_ENCODERS)}, not {frame_encoder!r}")
    # the store the command writes decides where exported graphs are cached (<index>/../onnx)
    settings = settings.model_copy(
        update={"index_dir": index_dir, "frame_encoder": frame_encoder or settings.frame_encoder}
    )
    try:
        items = list(expand_paths(paths))
    except ValueError as e:  # e.g. a manifest line that is not JSON
        fail(str(e))
    if title is not None:
        if len(items) != 1:
            fail("--title needs exactly one video")
        items = [IngestItem(items[0].path, title)]
    model, ckpt = load_model_and_path(index_dir, config, checkpoint, device, settings)
    store = open_store(index_dir, model, create=True, checkpoint=ckpt)
    try:
        if ray or ray_address is not None:
            if settings.frame_encoder != "torch":
                note = f"note: Ray workers encode frames with torch ({settings.frame_encoder} is not used)"
                typer.echo(note, err=True)
            results, secs = _run_ray_ingest(store, model, items, settings, ray_address, ckpt, quiet)
        else:
            results, secs = _run_ingest(store, model, items, settings, quiet)
    except ValueError as e:
        fail(str(e))
    except OSError as e:  # disk full, read-only store...: committed videos stay, a rerun adds the rest
        fail(f"cannot write to the store {index_dir}: {e}")
    finally:
        try:
            store.close()
        except OSError as e:
            fail(f"cannot write to the store {index_dir}: {e}")
    text, failed = _summary(results, secs)
    typer.echo(text)
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@index_app.command("rm")
def rm(
    video_ids: list[int] = typer.Argument(..., help="video ids (see `t2v index list`)"),
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
) -> None:
    """Remove videos: their moments are never returned again (space is reclaimed by compact)."""
    from indexer.store import VideoNotInStoreError

    store = open_store(index_dir_of(index, indexer_settings()))
    missing = 0
    try:
        for vid in video_ids:
            try:
                n = store.remove_video(vid)
                typer.echo(f"removed video {vid} ({n} clips)")
            except VideoNotInStoreError as e:
                typer.echo(f"error: {e}", err=True)
                missing += 1
    finally:
        store.close()
    if missing:
        raise typer.Exit(EXIT_SOME_FAILED)


@index_app.command("list")
def list_videos(
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    title: str | None = typer.Option(None, help="only titles containing this text"),
    offset: int = typer.Option(0, min=0),
    limit: int = typer.Option(100, min=1),
    as_json: bool = typer.Option(False, "--json", help="JSON lines"),
) -> None:
    """List indexed videos."""
    store = open_store(index_dir_of(index, indexer_settings()))
    try:
        for v in store.list_videos(offset, limit, title):
            if as_json:
                typer.echo(json.dumps(v.to_dict()))
            else:
                typer.echo(f"{v.id}\t{v.title}\t{v.duration:.1f}s\t{v.num_clips} clips\t{v.path}")
    finally:
        store.close()


@index_app.command("stats")
def stats(
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Counts, dimensions, index type and model of a store."""
    store = open_store(index_dir_of(index, indexer_settings()))
    try:
        s = store.stats()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(s.to_dict(), indent=2))
        return
    cfg = s.model.get("config", {})
    stage1 = (
        f"qdrant: {s.index_vectors} clips, one point each"
        if s.index["type"] == "qdrant"
        else f"faiss: {s.index['type']} with {s.index_vectors} vectors"
    )
    typer.echo(
        f"store: {s.path} (format v{s.format_version}, generation {s.generation})\n"
        f"videos: {s.videos}\nclips: {s.clips} (+{s.deleted_clips} deleted, awaiting compact)\n"
        f"vectors: {s.vectors} x D={s.dim} ({s.vectors_per_clip} per clip), float16\n"
        f"{stage1}\n"
        f"model: {cfg.get('name') or cfg.get('backbone')} ({cfg.get('mode')}), {s.model.get('weights')}\n"
        f"disk: {s.disk_bytes / 1e6:.1f} MB"
    )


@index_app.command("verify")
def verify(
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    fast: bool = typer.Option(
        False, "--fast", help="the sampled check a store runs on open (256 FAISS rows), not every row"
    ),
) -> None:
    """Check that FAISS ids, the float16 matrices and SQLite agree (reports; repairs nothing)."""
    # opened without the check on open: it would repair (rebuild FAISS) what verify must report
    store = open_store(index_dir_of(index, indexer_settings()), check=False)
    try:
        report = store.verify(fast=fast)
    finally:
        store.close()
    what = "sampled" if fast else "every row"
    if report.ok:
        typer.echo(f"ok: {report.checked_clips} clips ({what}); FAISS, matrices and SQLite agree")
        return
    for p in report.problems:
        typer.echo(f"problem: {p}")
    # one line on stderr (the problems above on stdout); a normal open repairs what it can
    fail(
        f"verify ({what}) found {len(report.problems)} problems: {report.problems[0]}; "
        "opening the store normally (t2v serve, t2v index add) repairs what it can",
        EXIT_SOME_FAILED,
    )


@index_app.command("compact")
def compact(
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    index_type: str | None = typer.Option(
        None,
        help="pin the first-stage FAISS index: 'flat' (every row, exact), 'global' (one pooled vector "
        "per clip, exact), 'global-ivf' (pooled, inverted lists), 'ivf-sq8', 'ivf', 'ivf-pq' or 'hnsw' "
        "(every row). Default: a pinned store keeps its type; else by size - 'flat' while rows x D "
        "<= 2^20, 'ivf-sq8' (every row, 8-bit codes in inverted lists) up to 2^27 (2^31 for a "
        "trained model with views and <= 2,048 floats a clip), then 'global-ivf'; IVF lists "
        "retrained as the store grows 4x",
    ),
) -> None:
    """Drop deleted clips from disk and rebuild the FAISS index."""
    from indexer.store.vector_index import INDEX_TYPES

    if index_type is not None and index_type not in INDEX_TYPES:  # before compact commits anything
        fail(f"unknown index type {index_type!r} (choose from {', '.join(INDEX_TYPES)})")
    store = open_store(index_dir_of(index, indexer_settings()))
    try:
        out = store.compact(index_type)
    finally:
        store.close()
    typer.echo(
        f"compacted: removed {out['removed_clips']} clips, {out['live_clips']} live, "
        f"faiss {out['index']['type']}, generation {out['generation']}"
    )


@index_app.command("reindex")
def reindex(
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
    config: str | None = typer.Option(None, help="the new model's config"),
    checkpoint: Path | None = typer.Option(None, help="the new model's checkpoint"),
    device: str | None = typer.Option(None),
    window: float | None = typer.Option(None, help="clip window in seconds (T2V_WINDOW)"),
    stride: float | None = typer.Option(None, help="step between windows in seconds (T2V_STRIDE)"),
    batch_size: int | None = typer.Option(None, help="clips per encoder batch (T2V_BATCH_SIZE)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Rebuild the store for a new model from the original video files (then swap it in)."""
    from indexer.ingest.pipeline import IngestItem
    from indexer.store import swap_in
    from indexer.store.backends import BackendConfig

    settings = indexer_settings(window, stride, batch_size)
    index_dir = index_dir_of(index, settings)
    if config is None and checkpoint is None:
        fail("reindex needs the new model: --config and/or --checkpoint")
    require_store(index_dir)
    model, ckpt = load_model_and_path(index_dir, config, checkpoint, device, settings)
    old = open_store(index_dir)
    try:
        items: list[IngestItem] = []
        offset = 0
        while batch := old.list_videos(offset, 1000):
            items.extend(IngestItem(Path(v.path), v.title) for v in batch)
            offset += len(batch)
    finally:
        old.close()
    tmp = index_dir.with_name(index_dir.name + ".reindex-new")
    if tmp.exists():
        shutil.rmtree(tmp)  # an earlier interrupted reindex
    # staged on FAISS: a shared Qdrant collection keeps serving the old store until the swap; the
    # first open after it refills the collection (the new store has no sync record for it)
    new = open_store(tmp, model, create=True, checkpoint=ckpt, backend=BackendConfig())
    try:
        results, secs = _run_ingest(new, model, items, settings, quiet)
    finally:
        new.close()
    swap_in(index_dir, tmp)  # the old store stays complete until the new one is in place
    text, failed = _summary(results, secs)
    typer.echo(f"reindexed {index_dir} for the new model; {text}")
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


@index_app.command("export")
def export(
    to: str = typer.Option(
        ...,
        "--to",
        help="the vector backend to fill from the store: 'qdrant' (where: T2V_VECTORS__QDRANT_URL, "
        "else an in-process engine in <index>/qdrant) or 'faiss' (the store's own index file)",
    ),
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP),
) -> None:
    """Fill a vector backend from the store (clips it lacks; deleted ones removed) and verify it."""
    import dataclasses

    from indexer.store.backends import BACKENDS

    if to not in BACKENDS:
        fail(f"unknown vector backend {to!r} (choose from {', '.join(BACKENDS)})")
    settings = indexer_settings()
    index_dir = index_dir_of(index, settings)
    require_store(index_dir)
    backend = dataclasses.replace(settings.vectors.config(), kind=to)
    t0 = time.perf_counter()
    store = open_store(index_dir, backend=backend)  # opening catches the backend up with SQLite
    try:
        store.flush()  # durable: the engine's segments (and index), then its sync record
        report = store.verify()
        clips = store.stats().clips
    finally:
        store.close()
    for p in report.problems:
        typer.echo(f"problem: {p}", err=True)
    if not report.ok:
        typer.echo(f"export to {to} failed verification: {len(report.problems)} problems", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)
    typer.echo(
        f"exported: {clips} live clips in {to} ({time.perf_counter() - t0:.1f}s), verified; "
        f"search with it: T2V_VECTORS__BACKEND={to}"
    )
