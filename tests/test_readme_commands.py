"""Every command line the README shows, run as written.

The shell lines are taken from the README's ```bash / ```console blocks (a `$ ` prompt marks a
command in a console block; a trailing backslash continues a line; `# ...` comments are dropped).
The README's "Checking this README" table lists the lines that are not run and why (each row is
a line prefix); every other line runs, in README order, in one fresh environment:

- the working directory is a new temporary folder with `model/`, `demo/`, `scripts/` and
  `docs/` linked from the checkout (so `model/configs/...` and `demo/t2v-demo.pt` resolve);
- HOME is a temporary folder whose `~/videos` holds two small rendered clips
  (`clip1.mp4`, `clip2.mp4`), so `~/videos/...` lines have something to index;
- `t2v serve ...` starts in the background and the next lines run once it printed `ready:`;
  port 8000 in the README is replaced by a free port (T2V_PORT and the `--server` URLs).

The fast test checks that every line is either run or documented as skipped, and that the files
the README names exist; the slow test runs them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import REPO, colour_video, free_port

README = REPO / "README.md"
LINKED = ("model", "demo", "scripts", "docs")  # repository folders the lines may name
README_PORT = "8000"


@dataclass(frozen=True)
class Line:
    command: str  # as written, comments and prompts removed
    skip: str | None  # why it is not run (the README's table), None when it runs


def shell_lines(text: str) -> list[str]:
    """Command lines of the ```bash/```sh/```console blocks of a Markdown text."""
    out: list[str] = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        if lang not in ("bash", "sh", "console"):
            continue
        pending = ""
        for raw in body.splitlines():
            if lang == "console" and not pending:
                if not raw.startswith("$ "):
                    continue  # output
                raw = raw[2:]
            line = raw if pending == "" else pending + " " + raw.strip()
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1].rstrip()
                continue
            pending = ""
            command = strip_comment(line).strip()
            if command:
                out.append(command)
    return out


def strip_comment(line: str) -> str:
    """The line without a `# comment` (a # inside quotes, or inside a word, stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def skip_table(text: str) -> dict[str, str]:
    """The README's "Checking this README" table: line prefix -> why it is not run."""
    section = text.split("## Checking this README", 1)
    assert len(section) == 2, "README.md has no 'Checking this README' section"
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \|$", section[1].split("\n## ", 1)[0], flags=re.M)
    return dict(rows)


def readme_lines() -> list[Line]:
    text = README.read_text()
    skips = skip_table(text)
    lines = []
    for cmd in shell_lines(text):
        why = next((reason for prefix, reason in skips.items() if cmd.startswith(prefix)), None)
        lines.append(Line(cmd, why))
    return lines


def test_every_readme_line_is_run_or_documented_as_skipped() -> None:
    lines = readme_lines()
    assert len(lines) >= 10
    skips = skip_table(README.read_text())
    used = {p for p in skips if any(line.command.startswith(p) for line in lines)}
    assert used == set(skips), f"table rows that match no README line: {set(skips) - used}"
    run = [line for line in lines if line.skip is None]
    assert any(line.command.startswith("t2v index add") for line in run)
    assert any(line.command.startswith("t2v serve") for line in run)


def test_files_the_readme_lines_name_exist() -> None:
    # a skipped line must still point at real files: configs, scripts, the demo model
    for line in readme_lines():
        for word in shlex.split(line.command):
            if re.match(r"^(model|demo|scripts|docker|bench)/\S+\.\w+$", word):
                assert (REPO / word).is_file(), f"README line {line.command!r} names missing {word}"


@pytest.mark.slow  # every runnable line, each loading the demo model (~1-2 min on 2 cores)
def test_readme_lines_run_as_written(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(REPO / name)
    colour_video(home / "videos" / "clip1.mp4", "red", 3.0)
    colour_video(home / "videos" / "clip2.mp4", "blue", 2.0)
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("T2V_")}
    bindir = str(Path(sys.executable).parent)  # the venv's `t2v`
    env.update(
        HOME=str(home),
        PATH=bindir + os.pathsep + env.get("PATH", ""),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        T2V_MODEL__DEVICE="cpu",
        T2V_PORT=port,
        PYTHONUNBUFFERED="1",
    )
    servers: list[subprocess.Popen[str]] = []
    try:
        for line in readme_lines():
            if line.skip is not None:
                continue
            command = line.command.replace(f":{README_PORT}", f":{port}")
            if command.startswith("t2v serve"):
                servers.append(start_server(command, work, env, tmp_path / "serve.log"))
                continue
            proc = subprocess.run(
                ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600
            )
            assert proc.returncode == 0, f"README line {line.command!r} failed:\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr, proc.stderr
    finally:
        for srv in servers:
            srv.terminate()
            srv.wait(timeout=60)


def start_server(command: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """Start a README `t2v serve` line; return once it printed `ready:` (fail if it exits)."""
    out = open(log, "w")  # noqa: SIM115 - the server writes to it until stopped
    proc = subprocess.Popen(
        ["bash", "-c", "exec " + command], cwd=cwd, env=env, stdout=out, stderr=out, text=True
    )
    deadline = time.monotonic() + 300
    while "ready:" not in log.read_text():
        assert proc.poll() is None, f"README line {command!r} exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return proc
