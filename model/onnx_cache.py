"""A cached ONNX graph that is trusted only after it reproduces the torch model: load, check, export again.

Shared by the query graph (`onnx_text`) and the image-tower graph (`onnx_frames`): a damaged, torn
or stale cache file is replaced by a fresh export rather than served, and a fresh export that does
not reproduce the model is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger("t2v.model")

G = TypeVar("G")


def cpu_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session of `path` with `threads` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # warnings about unused initialisers are noise here
    # the pool's threads spin between a run's kernels (fast hand-offs) but stop when the run ends:
    # left spinning they took the other core from the rest of a search (HTTP p50 at 1k ViT-B/32
    # clips, 2 threads: 28.3 ms spinning, 24.4 ms stopped; issue 17, docs/BENCHMARKS.md)
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def load_checked(
    path: Path,
    load: Callable[[], G],
    agrees: Callable[[G], bool],
    export: Callable[[], object],
    what: str,
    stale: tuple[Path, ...] = (),
) -> G:
    """The graph at `path` when it loads and `agrees` with the model; otherwise `path` (and the
    `stale` files derived with it) are removed, `export` writes it again, and the fresh graph must
    agree (RuntimeError if it does not)."""
    if path.exists():
        try:
            cached = load()
            if agrees(cached):
                return cached
            reason = "its output differs from the model's"
        except Exception as e:  # noqa: BLE001 - a damaged cache file is exported again below
            reason = str(e)
        log.warning("cached %s %s is unusable (%s): exporting it again", what, path, reason)
        for old in {path, *stale}:
            old.unlink(missing_ok=True)
    log.info("exporting the %s to %s (once per model)", what, path)
    export()
    fresh = load()
    if not agrees(fresh):
        raise RuntimeError(f"the exported {what} {path} does not reproduce the model")
    return fresh
