"""`t2v train`, `t2v eval`, `t2v synth`: training, evaluation and the synthetic benchmark."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from service.cli.common import cli_errors, fail

if TYPE_CHECKING:
    import numpy as np
    from tqdm import tqdm

    from indexer.corpora.datasets import RetrievalSet
    from model import T2VParser
    from model.backbone import PreprocessCfg


def _progress(total: int, desc: str) -> tqdm:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, unit="clip", dynamic_ncols=True)


def _load_frames(
    spec: str, pre: PreprocessCfg, frames: int, per_segment: int, cache_dir: str, workers: int
) -> tuple[RetrievalSet, np.ndarray]:
    """(data set, (N, T, P, S, S, 3) uint8 frames), decoding only what the cache lacks."""
    from indexer.corpora.datasets import FrameCache, load_dataset

    ds = load_dataset(spec)
    cache = FrameCache(cache_dir, pre, frames, per_segment)
    with _progress(len(ds.clips), f"frames {ds.name}") as bar:
        arr = cache.load_all(ds.clips, workers=workers, progress=bar.update)
    return ds, arr


def evaluate(model: T2VParser, spec: str, cache_dir: str, workers: int = 2) -> dict[str, Any]:
    """Metrics over all captions and per caption kind (e.g. partial / full)."""
    from model.metrics import retrieval_metrics
    from model.train import score_dataset

    ds, arr = _load_frames(spec, model.backbone.preprocess, model.config.frames, 1, cache_dir, workers)
    scores = score_dataset(model, arr[:, :, 0], ds.captions)  # (Q, N), segment middles
    results: dict[str, Any] = {}
    subsets = [("all", list(range(len(ds.captions))))]
    subsets += [(k, [i for i, kk in enumerate(ds.caption_kind) if kk == k]) for k in ds.kinds()]
    for name, idx in subsets:
        m = retrieval_metrics(scores[idx], [ds.caption_clip[i] for i in idx])
        results[name] = {"queries": len(idx), "clips": len(ds.clips), **m}
    return {"dataset": str(spec), "results": results}


def format_table(results: dict[str, Any]) -> str:
    cols = ["R@1", "R@5", "R@10", "MdR", "MnR"]
    head = f"{'subset':<10}{'queries':>8}  " + "  ".join(f"t2v {c:>5}" for c in cols)
    head += "  " + "  ".join(f"v2t {c:>5}" for c in cols)
    lines = [head]
    for name, r in results.items():
        vals = "  ".join(f"{r['t2v'][c]:>9.1f}" for c in cols) + "  "
        vals += "  ".join(f"{r['v2t'][c]:>9.1f}" for c in cols)
        lines.append(f"{name:<10}{r['queries']:>8}  {vals}")
    return "\n".join(lines)


def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="training config JSON"),
    model: str | None = typer.Option(None, help="model config name or JSON path"),
    init_backbone: str | None = typer.Option(None, help="start the backbone from this model checkpoint"),
    train_data: str | None = typer.Option(None, "--train", help="training manifest or msrvtt:<root>:train9k"),
    val: str | None = typer.Option(None, help="data set evaluated after training"),
    out_dir: str | None = typer.Option(None, help="run directory (resumes if it holds a state)"),
    steps: int | None = typer.Option(None),
    batch_size: int | None = typer.Option(None),
    lr_backbone: float | None = typer.Option(None),
    lr_new: float | None = typer.Option(None),
    warmup_steps: int | None = typer.Option(None),
    seed: int | None = typer.Option(None),
    checkpoint_every: int | None = typer.Option(None),
    device: str | None = typer.Option(None, help="auto, cpu, cuda[:N]"),
    threads: int | None = typer.Option(None, help="torch CPU threads"),
    cache_dir: str | None = typer.Option(None, help="frame cache directory"),
    balance_kinds: bool | None = typer.Option(
        None, "--balance-kinds/--no-balance-kinds", help="sample caption kinds (partial/full) equally"
    ),
    export: Path | None = typer.Option(None, help="also copy the final model checkpoint here"),
) -> None:
    """Train a model (config file + flag overrides); kill it and run again to resume."""
    import torch

    from indexer.settings import resolve_device
    from model import get_config
    from model.fileio import write_bytes_atomic
    from model.train import TrainConfig, TrainData, Trainer

    overrides = {
        "model": model,
        "init_backbone": init_backbone,
        "train": train_data,
        "val": val,
        "out_dir": out_dir,
        "steps": steps,
        "batch_size": batch_size,
        "lr_backbone": lr_backbone,
        "lr_new": lr_new,
        "warmup_steps": warmup_steps,
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "device": device,
        "threads": threads,
        "cache_dir": cache_dir,
        "balance_kinds": balance_kinds,
    }
    with cli_errors(ValueError):  # also the data set and frame code's ValueErrors
        if config is not None:
            cfg = TrainConfig.from_file(config, **overrides)
        else:
            cfg = TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
        if not cfg.train:
            fail("no training data: pass --train or set 'train' in the config file")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dev = resolve_device(cfg.device)
        mcfg = get_config(cfg.model)
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        trainer = Trainer(cfg, mcfg, dev)
        pre = trainer.model.backbone.preprocess
        ds, arr = _load_frames(cfg.train, pre, mcfg.frames, cfg.per_segment, cfg.cache_dir, cfg.workers)
        trainer.set_data(TrainData(arr, ds.captions, ds.caption_clip, ds.caption_kind))
        if trainer.maybe_resume():
            typer.echo(f"resuming {cfg.out_dir} at step {trainer.step}/{cfg.steps}", err=True)
        (Path(cfg.out_dir) / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
        typer.echo(
            f"training {mcfg.name} ({mcfg.mode}) on {dev}: {len(ds.clips)} clips, "
            f"{len(ds.captions)} captions, "
            f"{cfg.steps} steps x {cfg.batch_size}",
            err=True,
        )
        path = trainer.fit()
        typer.echo(f"model checkpoint: {path}")
        if export is not None:
            write_bytes_atomic(export, path.read_bytes())
            typer.echo(f"exported: {export}")
        if cfg.val:
            trainer.model.eval()
            res = evaluate(trainer.model, cfg.val, cfg.cache_dir, cfg.workers)
            (Path(cfg.out_dir) / "val.json").write_text(json.dumps(res, indent=1) + "\n")
            typer.echo(format_table(res["results"]))
        from indexer.report.plots import CURVES_FILE, training_curves_png

        val_file = path.parent / "val.json"
        val_res = json.loads(val_file.read_text()) if cfg.val and val_file.is_file() else None
        curves = training_curves_png(path.parent / "log.jsonl", path.parent / CURVES_FILE, val_res)
        typer.echo(f"training curves: {curves}")


def eval_cmd(
    data: str = typer.Argument(..., help="manifest (.jsonl) or msrvtt:<root>[:test1k]"),
    checkpoint: Path | None = typer.Option(None, help="model checkpoint"),
    config: str | None = typer.Option(None, help="model config (without a checkpoint: its own weights)"),
    out: Path | None = typer.Option(None, help="write the metrics here as JSON"),
    mode: str | None = typer.Option(
        None, help="score a meanp/zeroshot checkpoint in the other mode (they share their weights)"
    ),
    frames: int | None = typer.Option(None, help="with --mode: frames per clip (T) to score with"),
    device: str = typer.Option("auto"),
    cache_dir: str = typer.Option("var/frame-cache", help="frame cache directory"),
    workers: int = typer.Option(2, help="parallel ffmpeg decodes"),
) -> None:
    """Text->video and video->text R@1/5/10, MdR, MnR over a data set, per caption kind."""
    import torch

    from indexer.settings import resolve_device
    from model import create_model, model_identity

    if checkpoint is None and config is None:
        fail("pass --checkpoint and/or --config")
    if mode is not None and checkpoint is None:
        fail("--mode needs a --checkpoint")
    with cli_errors(ValueError):
        torch.manual_seed(0)  # a config without weights (zero-shot baseline) is then reproducible
        if mode is not None and checkpoint is not None:
            m = _with_mode(checkpoint, mode, resolve_device(device), frames)
        else:
            m = create_model(config, checkpoint=checkpoint, device=resolve_device(device))
        res = evaluate(m, data, cache_dir, workers)
        res["model"] = model_identity(m)
        typer.echo(format_table(res["results"]))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=1) + "\n")


def _with_mode(checkpoint: Path, mode: str, device: str, frames: int | None = None) -> T2VParser:
    """A checkpoint's weights under another scoring mode with the same parameters."""
    from model import T2VParser, read_checkpoint
    from model.backbone import ClipBackbone

    cfg, state, digest = read_checkpoint(checkpoint)
    if {cfg.mode, mode} - {"meanp", "zeroshot"}:
        raise ValueError(f"--mode converts between meanp and zeroshot only (checkpoint is {cfg.mode})")
    cfg = cfg.replace(mode=mode, name=f"{cfg.name}-as-{mode}", frames=frames or cfg.frames)
    m = T2VParser(cfg, ClipBackbone.create(cfg.backbone, pretrained=None))
    m.load_state_dict(state, strict=True)
    m.checkpoint_sha256 = digest
    return m.to(device).eval()


def synth(
    out_dir: Path = typer.Argument(..., help="where the videos and manifests go"),
    seed: int = typer.Option(0),
    train_videos: int = typer.Option(600, "--train"),
    val_videos: int = typer.Option(40, "--val"),
    test_videos: int = typer.Option(40, "--test"),
    workers: int = typer.Option(2, help="parallel ffmpeg encoders"),
    renderer: int = typer.Option(
        1,
        min=1,
        max=2,
        help="1: square 96 px, 10 fps, motion trails; 2: an independent renderer (no trails, varied "
        "sizes, speeds, resolutions and frame rates, textured backgrounds), same held-out combinations",
    ),
) -> None:
    """Generate the synthetic partial-alignment benchmark (videos + train/val/test manifests)."""
    if renderer == 2:
        from indexer.corpora.synthetic2 import generate_benchmark2 as generate
    else:
        from indexer.corpora.synthetic import generate_benchmark as generate

    with cli_errors(ValueError):
        manifests = generate(out_dir, seed, train_videos, val_videos, test_videos, workers)
    for split, path in manifests.items():
        typer.echo(f"{split}: {path}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(eval_cmd)
    app.command("synth")(synth)
