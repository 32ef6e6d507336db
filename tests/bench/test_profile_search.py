"""bench/profile_search.py as a user runs it: py-spy samples the search loop and the samples are
split into the search's parts (the profile docs/BENCHMARKS.md quotes)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow  # profiles searches on a generated store


def test_profile_splits_samples_into_search_parts() -> None:
    cmd = [sys.executable, str(REPO / "bench" / "profile_search.py"), "--dist", "clustered",
           "--clips", "3000", "--index", "global", "--seconds", "4"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "Permission denied" in proc.stdout + proc.stderr:
        pytest.skip("this machine does not allow ptrace (py-spy cannot attach)")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    shares = {m[0]: float(m[1]) for m in re.findall(r"^\| ([^|]+?) \| ([\d.]+)% \|$", proc.stdout, re.M)}
    assert abs(sum(shares.values()) - 100.0) < 0.5, shares
    # the two stages and the rerank kernel were seen; the search loop is most of the samples
    assert shares.get("stage 1: FAISS search", 0) > 0
    assert shares.get("stage 2: score kernel (fp16->fp32, GEMM, soft-max)", 0) > 0
    assert shares.get("other (final sort, result assembly, Python)", 0) < 50
    assert int(re.search(r"; (\d+) searches in 4 s", proc.stdout).group(1)) > 5  # type: ignore[union-attr]
