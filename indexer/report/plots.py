"""Plots for the docs: training curves beside a checkpoint, and the benchmark figures.

matplotlib with the Agg backend; every writer is atomic (temp file + rename) and returns the path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexer.report.figures import _pyplot, _save

CURVES_FILE = "training-curves.png"
Series = dict[str, tuple[Sequence[float], Sequence[float]]]  # name -> (x, y)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Rows of a trainer's log.jsonl (a torn last line after a crash is skipped)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def val_r1(val: dict[str, Any] | None) -> dict[str, float]:
    """Text->video R@1 per caption kind from an evaluate() result ({} when there is none)."""
    if not val:
        return {}
    return {kind: float(r["t2v"]["R@1"]) for kind, r in val.get("results", {}).items() if "t2v" in r}


def training_curves_png(log: Path, out: Path, val: dict[str, Any] | None = None) -> Path:
    """Loss (and its InfoNCE / diversity parts) per step; val t2v R@1 per caption kind when evaluated."""
    rows = [r for r in read_log(log) if "step" in r and "loss" in r]
    if not rows:
        raise ValueError(f"{log} has no logged training steps")
    r1 = val_r1(val)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if r1 else 1, figsize=(10 if r1 else 6, 4), dpi=100, squeeze=False)
    ax = axes[0][0]
    steps = [r["step"] for r in rows]
    for key in ("loss", "nce", "diversity"):
        if all(key in r for r in rows):
            ax.plot(steps, [r[key] for r in rows], label=key)
    ax.set_xlabel("step")
    ax.set_title("training loss")
    ax.legend()
    if r1:
        bx = axes[0][1]
        bx.bar(list(r1), list(r1.values()), color="tab:green")
        bx.set_ylabel("text->video R@1 (%)")
        bx.set_title(f"validation after step {steps[-1]}")
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return out


def line_png(out: Path, title: str, xlabel: str, ylabel: str, series: Series) -> Path:
    """One line per series (name -> (x, y)): latency vs store size, recall vs candidate count."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return out
