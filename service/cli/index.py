"""`t2v index add|rm|list|stats|verify|reindex|compact` and `t2v search`: the offline indexer's CLI.

Exit codes: 0 success; 1 some files failed / verify found problems / unknown video id;
2 the command cannot run (no store, model mismatch, bad arguments).
Heavy imports (torch, faiss) happen inside the commands so `t2v --help` stays fast.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from indexer.ingest.pipeline import IngestProgress, IngestResult
    from indexer.settings import IndexerSettings
    from indexer.store import Store

index_app = typer.Typer(
    help="Build and maintain a video index (store directory).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_INDEX_HELP = "store directory (default: T2V_INDEX_DIR or var/index)"
_CONFIG_HELP = "model config name or JSON path (default: the store's model, else T2V_MODEL__CONFIG)"
_CKPT_HELP = "T2VParser checkpoint (default: the store's checkpoint, else T2V_MODEL__CHECKPOINT)"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> IndexerSettings:
    from indexer.settings import IndexerSettings

    return IndexerSettings()


def _with_overrides(
    settings: IndexerSettings, window: float | None, stride: float | None, batch_size: int | None
) -> IndexerSettings:
    updates = {"window": window, "stride": stride, "batch_size": batch_size}
    return settings.model_copy(update={k: v for k, v in updates.items() if v is not None})


def _index_dir(index: Path | None, settings: IndexerSettings) -> Path:
    return index if index is not None else settings.index_dir


def _load_model(
    index_dir: Path,
    config: str | None,
    checkpoint: Path | None,
    device: str | None,
    settings: IndexerSettings,
    text_only: bool = False,
) -> Any:
    """Explicit flags, else the model recorded in the store, else the settings' model."""
    from indexer.settings import resolve_device
    from indexer.store import MANIFEST
    from model import T2VConfig, create_model

    dev = resolve_device(device or settings.model.device)
    cache = settings.model.cache_dir
    if config is None and checkpoint is None and (index_dir / MANIFEST).is_file():
        recorded = json.loads((index_dir / MANIFEST).read_text()).get("model", {})
        ckpt = recorded.get("checkpoint_path")
        if ckpt:
            return create_model(None, checkpoint=ckpt, device=dev, text_only=text_only, cache_dir=cache)
        cfg = T2VConfig.from_dict(recorded.get("config", {}))
        if not cfg.pretrained:
            raise _fail(f"the store at {index_dir} records no checkpoint for its model: pass --checkpoint")
        return create_model(cfg, device=dev, text_only=text_only, cache_dir=cache)
    ckpt_path = checkpoint if checkpoint is not None else settings.model.checkpoint
    cfg_name = config if config is not None else (None if ckpt_path else settings.model.config)
    return create_model(cfg_name, checkpoint=ckpt_path, device=dev, text_only=text_only, cache_dir=cache)


def _identity(model: Any) -> dict[str, Any]:
    from indexer.store import store_identity

    ident = store_identity(model)
    if ident["weights"].startswith("random:"):
        raise _fail(
            f"model {model.config.name or model.config.backbone} has no trained or pretrained weights: "
            "pass --checkpoint (a T2VParser .pt file) or a config with pretrained weights"
        )
    return ident


def _open(
    index_dir: Path, model: Any | None = None, create: bool = False, checkpoint: Path | None = None
) -> Store:
    """Open a store (checking the model); a new store remembers the checkpoint's path so that
    `t2v search --index DIR` needs no model flags."""
    from indexer.store import Store, StoreError

    try:
        ident = _identity(model) if model is not None else None
        if ident is not None and checkpoint is not None:
            ident["checkpoint_path"] = str(Path(checkpoint).resolve())
        return Store.open(index_dir, ident, create=create)
    except StoreError as e:
        raise _fail(str(e)) from None
    except (OSError, sqlite3.Error) as e:  # e.g. a full disk: SQLite cannot create its WAL files
        raise _fail(f"cannot open the store {index_dir}: {e} (disk full or not writable?)") from None


def _model_errors() -> tuple[type[Exception], ...]:
    from model import CheckpointError, ConfigError, WeightsNotFoundError

    return (CheckpointError, ConfigError, WeightsNotFoundError)


class _Reporter:
    """A progress bar on a terminal, plain log lines otherwise; per-file errors always on stderr."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total = total
        self.quiet = quiet
        self.bar: Any = None
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
    store: Store, model: Any, items: list[Any], settings: IndexerSettings, quiet: bool = False
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
    model: Any,
    items: list[Any],
    settings: IndexerSettings,
    address: str | None,
    checkpoint: Path | None,
    quiet: bool = False,
) -> tuple[list[IngestResult], float]:
    """`--ray`: the same ingestion as a Ray Data pipeline (indexer.ingest.distributed; Ray imported here)."""
    from indexer.ingest.distributed import DistributedError, RayIngestor, RayOptions

    reporter = _Reporter(len(items), quiet)
    t0 = time.perf_counter()
    try:
        ingestor = RayIngestor.from_settings(store, model, settings, RayOptions(address=address), checkpoint)
        results = ingestor.ingest_many(items, on_progress=reporter)
    except DistributedError as e:
        raise _fail(str(e)) from None
    finally:
        reporter.close()
    return results, time.perf_counter() - t0


@index_app.command("add")
def add(
    paths: list[Path] = typer.Argument(..., help="video files, folders (recursive) or *.jsonl manifests"),
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP),
    config: str | None = typer.Option(None, help=_CONFIG_HELP),
    checkpoint: Path | None = typer.Option(None, help=_CKPT_HELP),
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
) -> None:
    """Index videos into the store (created on first use); already indexed files are skipped."""
    from indexer.ingest.pipeline import IngestItem, expand_paths

    settings = _with_overrides(_settings(), window, stride, batch_size)
    index_dir = _index_dir(index, settings)
    try:
        items = list(expand_paths(paths))
    except ValueError as e:
        raise _fail(str(e)) from None
    if title is not None:
        if len(items) != 1:
            raise _fail("--title needs exactly one video")
        items = [IngestItem(items[0].path, title)]
    try:
        model = _load_model(index_dir, config, checkpoint, device, settings)
    except _model_errors() as e:
        raise _fail(str(e)) from None
    store = _open(index_dir, model, create=True, checkpoint=checkpoint or settings.model.checkpoint)
    try:
        if ray or ray_address is not None:
            ckpt = checkpoint or settings.model.checkpoint
            results, secs = _run_ray_ingest(store, model, items, settings, ray_address, ckpt, quiet)
        else:
            results, secs = _run_ingest(store, model, items, settings, quiet)
    except ValueError as e:
        raise _fail(str(e)) from None
    except OSError as e:  # disk full, read-only store...: committed videos stay, a rerun adds the rest
        raise _fail(f"cannot write to the store {index_dir}: {e}") from None
    finally:
        try:
            store.close()
        except OSError as e:
            raise _fail(f"cannot write to the store {index_dir}: {e}") from None
    text, failed = _summary(results, secs)
    typer.echo(text)
    if failed:
        raise typer.Exit(1)


@index_app.command("rm")
def rm(
    video_ids: list[int] = typer.Argument(..., help="video ids (see `t2v index list`)"),
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP),
) -> None:
    """Remove videos: their moments are never returned again (space is reclaimed by compact)."""
    from indexer.store import VideoNotInStoreError

    store = _open(_index_dir(index, _settings()))
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
        raise typer.Exit(1)


@index_app.command("list")
def list_videos(
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP),
    title: str | None = typer.Option(None, help="only titles containing this text"),
    offset: int = typer.Option(0, min=0),
    limit: int = typer.Option(100, min=1),
    as_json: bool = typer.Option(False, "--json", help="JSON lines"),
) -> None:
    """List indexed videos."""
    store = _open(_index_dir(index, _settings()))
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
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Counts, dimensions, index type and model of a store."""
    store = _open(_index_dir(index, _settings()))
    try:
        s = store.stats()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(s.to_dict(), indent=2))
        return
    cfg = s.model.get("config", {})
    typer.echo(
        f"store: {s.path} (format v{s.format_version}, generation {s.generation})\n"
        f"videos: {s.videos}\nclips: {s.clips} (+{s.deleted_clips} deleted, awaiting compact)\n"
        f"vectors: {s.vectors} x D={s.dim} ({s.vectors_per_clip} per clip), float16\n"
        f"faiss: {s.index['type']} with {s.index_vectors} vectors\n"
        f"model: {cfg.get('name') or cfg.get('backbone')} ({cfg.get('mode')}), {s.model.get('weights')}\n"
        f"disk: {s.disk_bytes / 1e6:.1f} MB"
    )


@index_app.command("verify")
def verify(index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP)) -> None:
    """Check that FAISS ids, the float16 matrices and SQLite agree."""
    store = _open(_index_dir(index, _settings()))
    try:
        report = store.verify()
    finally:
        store.close()
    if report.ok:
        typer.echo(f"ok: {report.checked_clips} clips; FAISS, matrices and SQLite agree")
        return
    for p in report.problems:
        typer.echo(f"problem: {p}", err=True)
    typer.echo(f"verify failed: {len(report.problems)} problems", err=True)
    raise typer.Exit(1)


@index_app.command("compact")
def compact(
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP),
    index_type: str | None = typer.Option(
        None,
        help="pin the first-stage FAISS index: 'flat' (every row, exact), 'global' (one pooled vector "
        "per clip, exact), 'global-ivf' (pooled, inverted lists), 'ivf' or 'hnsw' (every row). "
        "Default: by size - 'flat' while rows x D <= 2^27, then 'global-ivf', retrained as the store "
        "grows 4x",
    ),
) -> None:
    """Drop deleted clips from disk and rebuild the FAISS index."""
    store = _open(_index_dir(index, _settings()))
    try:
        out = store.compact(index_type)
    except ValueError as e:
        raise _fail(str(e)) from None
    finally:
        store.close()
    typer.echo(
        f"compacted: removed {out['removed_clips']} clips, {out['live_clips']} live, "
        f"faiss {out['index']['type']}, generation {out['generation']}"
    )


@index_app.command("reindex")
def reindex(
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP),
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
    from indexer.store import MANIFEST, Store, StoreError, swap_in

    settings = _with_overrides(_settings(), window, stride, batch_size)
    index_dir = _index_dir(index, settings)
    if config is None and checkpoint is None:
        raise _fail("reindex needs the new model: --config and/or --checkpoint")
    if not (index_dir / MANIFEST).is_file():
        raise _fail(f"{index_dir} is not a video store")
    try:
        model = _load_model(index_dir, config, checkpoint, device, settings)
    except _model_errors() as e:
        raise _fail(str(e)) from None
    try:
        old = Store.open(index_dir)
    except StoreError as e:
        raise _fail(str(e)) from None
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
    new = _open(tmp, model, create=True, checkpoint=checkpoint)
    try:
        results, secs = _run_ingest(new, model, items, settings, quiet)
    finally:
        new.close()
    swap_in(index_dir, tmp)  # the old store stays complete until the new one is in place
    text, failed = _summary(results, secs)
    typer.echo(f"reindexed {index_dir} for the new model; {text}")
    if failed:
        raise typer.Exit(1)


def search(
    query: str = typer.Argument(..., help="free-text query"),
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1, max=1000),
    group_by_video: bool = typer.Option(False, "--group-by-video", help="best moments per video"),
    video_id: list[int] | None = typer.Option(None, "--video-id", help="only these videos (repeatable)"),
    min_score: float | None = typer.Option(None, help="drop moments scoring below this"),
    exhaustive: bool = typer.Option(False, help="score every clip exactly (slow; for checking)"),
    config: str | None = typer.Option(None, help=_CONFIG_HELP),
    checkpoint: Path | None = typer.Option(None, help=_CKPT_HELP),
    device: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    server: str | None = typer.Option(None, "--server", help="search a running service at this URL"),
    api_key: str | None = typer.Option(None, "--api-key", help="X-API-Key for --server"),
) -> None:
    """Search an index for moments (two-stage: FAISS candidates, exact partial-alignment rerank)."""
    from indexer.search.searcher import Searcher
    from indexer.store import MANIFEST

    if server is not None:  # a remote service does the search (service/cli/remote.py)
        from service.cli.remote import remote_search

        remote_search(server, api_key, query, top_k, group_by_video, video_id or None, min_score, as_json)
        return
    settings = _settings()
    index_dir = _index_dir(index, settings)
    if not query.strip():
        raise _fail("the query is empty")
    if not (index_dir / MANIFEST).is_file():
        raise _fail(f"{index_dir} is not a video store; build one with `t2v index add`")
    try:
        model = _load_model(index_dir, config, checkpoint, device, settings, text_only=True)
    except _model_errors() as e:
        raise _fail(str(e)) from None
    store = _open(index_dir, model)
    try:
        result = Searcher(store, model).search(
            query, top_k, group_by_video, video_id or None, min_score, exhaustive
        )
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    if not result.moments:
        typer.echo("no results")
        return
    if result.groups is not None:
        for g in result.groups:
            typer.echo(f"{g.score:.4f}  video {g.video_id}  {g.title}  ({g.path})")
            for m in g.moments:
                typer.echo(f"    {m.score:.4f}  {_ts(m.start)}-{_ts(m.end)}")
    else:
        for m in result.moments:
            typer.echo(
                f"{m.score:.4f}  video {m.video_id}  {_ts(m.start)}-{_ts(m.end)}  {m.title}  ({m.path})"
            )
    t = result.timings_ms
    typer.echo(
        f"({result.candidates} candidates; encode {t['encode']:.0f} ms, candidates "
        f"{t['candidates']:.0f} ms, rerank {t['rerank']:.0f} ms)",
        err=True,
    )


def _ts(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:05.2f}" if h else f"{m}:{s:05.2f}"
