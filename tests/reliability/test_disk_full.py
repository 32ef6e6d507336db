"""Disk full during `t2v index add`: the add fails cleanly with a clear message, the store stays
consistent, and once space is back a rerun completes. A real full filesystem (a small tmpfs,
when we may mount one) and a simulated one (every fsync fails with ENOSPC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Forks, fill, mounted_tmpfs, wait_exit
from .test_crash import check_store

pytestmark = pytest.mark.slow  # full-disk trials


def add(forks: Forks, paths: list[Path], index: Path, ckpt: Path, log: Path, **fault: bool) -> int:
    argv = ["index", "add", *map(str, paths), "--index", str(index), "--checkpoint", str(ckpt)]
    argv += ["--window", "1", "--stride", "1", "-q"]
    return wait_exit(forks.cli(argv, log, **fault), 180)


def assert_clean_failure(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]
    low = text.lower()
    assert "no space left" in low or "disk full" in low or "disk i/o" in low, text[-3000:]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "mnt", "3m") as mnt:
        yield mnt


def test_real_full_tmpfs(
    forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmpfs: Path, tmp_path: Path
) -> None:
    index = tmpfs / "index"
    add(forks, corpus[:2], index, tiny_ckpt, tmp_path / "first.log")
    before = check_store(index, {})
    assert len(before) == 2, (tmp_path / "first.log").read_text()
    filler = fill(tmpfs)
    log = tmp_path / "full.log"
    add(forks, corpus[2:6], index, tiny_ckpt, log)
    text = log.read_text()
    assert_clean_failure(text)
    print(f"\nfull tmpfs add: {text.strip().splitlines()[-1]}")
    filler.unlink()
    during = check_store(index, {})
    assert set(before.items()) <= set(during.items())  # nothing lost, nothing half-present
    add(forks, corpus[2:6], index, tiny_ckpt, tmp_path / "rerun.log")
    assert sorted(check_store(index, {})) == sorted(str(p) for p in corpus[:6])


def test_simulated_enospc(forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    add(forks, corpus[:2], index, tiny_ckpt, tmp_path / "first.log")
    before = check_store(index, {})
    sizes = sorted((p.name, p.stat().st_size) for p in (index / "matrices").iterdir())
    log = tmp_path / "full.log"
    add(forks, corpus[2:5], index, tiny_ckpt, log, enospc_fsync=True)
    assert_clean_failure(log.read_text())
    print(f"\nsimulated ENOSPC add: {log.read_text().strip().splitlines()[-1]}")
    assert check_store(index, {}) == before
    # uncommitted rows were written and left behind; the next open truncates them
    add(forks, corpus[2:5], index, tiny_ckpt, tmp_path / "rerun.log")
    assert sorted(check_store(index, {})) == sorted(str(p) for p in corpus[:5])
    assert sizes  # the first add wrote a segment
