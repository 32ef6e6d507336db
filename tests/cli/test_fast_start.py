"""`t2v` starts fast: commands that need no model import no model stack (torch, open_clip, FAISS,
numpy, FastAPI). Timings are in docs/BENCHMARKS.md; this checks the cause, which does not depend
on the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO, cli_env, free_port

HEAVY = ("torch", "open_clip", "faiss", "numpy", "fastapi", "uvicorn")

PROBE = """
import json, sys
from service.cli import app
try:
    app(sys.argv[1:], prog_name="t2v")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["settings"],
        ["index", "add", "--help"],
        ["search", "a red circle", "--server", "http://127.0.0.1:{port}"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_commands_without_a_model_import_no_model_stack(args: list[str]) -> None:
    argv = [a.format(port=free_port()) for a in args]  # --server: nothing listens there
    code = PROBE.format(heavy=repr(HEAVY))
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    imported = json.loads(proc.stderr.strip().splitlines()[-1])
    assert imported == [], f"`t2v {' '.join(argv)}` imported {imported}"
