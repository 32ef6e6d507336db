"""What the benches over a kept trained store share (`bench_index.py synthetic --keep DIR` makes
one): the store / captions / checkpoint arguments, and the captions of the manifests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.settings import DEMO_CHECKPOINT  # noqa: E402


def add_store_args(p: argparse.ArgumentParser, store_help: str) -> None:
    """The kept store (positional), --data (caption manifests) and --checkpoint (its trained model)."""
    p.add_argument("store", help=store_help)
    p.add_argument("--data", nargs="+", default=["data/synth/test.jsonl"], help="captions (test splits)")
    p.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))


def captions(manifests: list[str]) -> list[str]:
    """Every caption of the manifests (JSON lines with a "caption"), in order."""
    lines = [x for f in manifests for x in Path(f).read_text().splitlines() if x.strip()]
    return [json.loads(x)["caption"] for x in lines]
