"""The benchmark suite runs end to end in its smoke size and writes a sane section (CLI as a user runs it)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.cli_forks import CliForks
from tests.support import REPO

pytestmark = pytest.mark.slow  # runs every benchmark part in --smoke mode


def test_run_all_smoke_writes_its_section(tmp_path: Path, cli_forks: CliForks) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Someone else's section\n\nkeep me\n")
    out = tmp_path / "figures.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [  # `python bench/run_all.py ...`, forked from the pre-imported test interpreter
        str(REPO / "bench" / "run_all.py"),
        "--smoke",
        "--doc",
        str(doc),
        "--json",
        str(out),
        "--work",
        str(tmp_path / "work"),
    ]
    proc = cli_forks.run(cmd, env, timeout=600, prog="python")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = doc.read_text()
    assert "## Someone else's section\n\nkeep me" in text  # other sections kept
    assert text.count("bench/run_all.py: begin") == 1
    figures = json.loads(out.read_text())
    rows = figures["search"]["rows"]
    # both distributions, both sizes, the exhaustive baseline and a two-stage row each
    for dist in ("clustered", "isotropic"):
        for clips in (200, 1000):
            mine = [r for r in rows if r["dist"] == dist and r["clips"] == clips]
            assert any(r["method"].startswith("exhaustive") for r in mine), mine
            two = [r for r in mine if not r["method"].startswith("exhaustive")]
            assert two
            for r in two:
                assert 0.0 <= r["recall10"] <= 1.0
                assert 0 < r["p50_ms"] <= r["p95_ms"]
                assert r["candidates"] <= clips
    # on clustered data the global first stage must find the planted clip's neighbourhood
    best = max(r["recall10"] for r in rows if r["dist"] == "clustered" and r["clips"] == 1000
               and not r["method"].startswith("exhaustive"))  # fmt: skip
    assert best >= 0.5
    # the exhaustive baseline scores every clip, the two-stage search fewer
    for r in rows:
        if r["method"].startswith("exhaustive"):
            assert r["candidates"] == r["clips"] and r["recall10"] == 1.0
    (http,) = figures["http"]["sizes"]
    assert http["clips"] == 300 and 0 < http["http_p50"] <= http["http_p95"] and 0 < http["inproc_p50"]
    # frame extraction against the CLIP4Clip-style baseline, one video
    assert any(line.startswith("| v0.mp4") for line in figures["extract"]["table"])
    assert any(line.startswith("| t2v-tiny") for line in figures["ingest"]["table"])
    # the large-store part: the store picked its own index; recall over its 5 referenced queries
    big = figures["million"]["rows"]
    assert [r["clips"] for r in big] == [2000] * len(big) and len(big) == 2
    assert big[1]["recall_queries"] == 5 and big[1]["queries"] == 10 and big[1]["recall10"] >= 0.5
    assert "(5 q)" in text
    # every row of the JSON is in the markdown tables
    table_rows = [line for line in text.splitlines() if re.match(r"\| (clustered|isotropic) \|", line)]
    assert len(table_rows) == len(rows) + len(big)
    # a rerun with the same --work reuses every part (a long suite resumes after an interruption)
    again = cli_forks.run(cmd, env, timeout=120, prog="python")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reusing") == 5 and doc.read_text() == text.replace(
        text.split("(wall ")[1].split(" min")[0], again.stdout.split("(wall ")[1].split(" min")[0], 1
    )
    for name, mem in figures["search"]["memory"].items():
        assert mem["disk_bytes_per_clip"] >= 20 * 512 * 2, name  # the float16 matrices at least
