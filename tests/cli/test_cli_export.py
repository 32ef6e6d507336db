"""`t2v index export --to qdrant|faiss`: fill another vector backend from a store, as a user runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.store import Store
from tests.indexer.store.test_store import add, identity
from tests.support import T2v, cli_env

pytest.importorskip("qdrant_edge")


@pytest.mark.slow  # four CLI processes (each imports torch)
def test_export_to_qdrant_then_verify_and_search_through_it(tmp_path: Path, t2v: T2v) -> None:
    rng = np.random.default_rng(20)
    with Store.open(tmp_path / "s", identity(), create=True) as store:
        vids = [add(store, rng, i, clips=2)[0] for i in range(6)]
        store.remove_video(vids[2])
    out = t2v("index", "export", "--to", "qdrant", "--index", tmp_path / "s")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("exported: 10 live clips in qdrant (") and "verified" in out.stdout
    assert (tmp_path / "s" / "qdrant").is_dir()
    # the setting makes every command use it: verify checks the engine too
    ok = t2v("index", "verify", "--index", tmp_path / "s", env=cli_env(T2V_VECTORS__BACKEND="qdrant"))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 12 clips"), ok.stderr
    stats = t2v("index", "stats", "--index", tmp_path / "s", env=cli_env(T2V_VECTORS__BACKEND="qdrant"))
    assert "\nqdrant: 10 clips, one point each\n" in stats.stdout, stats.stderr
    bad = t2v("index", "export", "--to", "milvus", "--index", tmp_path / "s")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: unknown vector backend 'milvus' (choose from faiss, qdrant)"
