"""`t2v` runs, test servers and bench scripts forked from one pre-imported interpreter, so a test
pays a fork instead of a fresh interpreter importing torch, open_clip and FAISS (~10 s of CPU
each, ~80 runs a suite).

The child runs exactly what `python -m service.cli ARGS` runs (`service.cli.main` with that argv),
in its own process with the environment, working directory, stdout and stderr files a subprocess
would get, and exits with the command's own status; a server (`tests.support.Server`) likewise
runs `python -m uvicorn ARGS` or `t2v serve|demo`. What a fork cannot show - that a fresh
interpreter starts, imports what it needs and reads its settings - is shown by the tests that
still start one: tests/cli/test_fast_start.py, the bad-setting test of tests/cli/test_startup.py,
the console-script test of tests/cli/test_rank_demo.py and tests/test_readme_commands.py (every
README line through the installed `t2v`).

It is the one fork server of the suite: the reliability tests fork their kill -9, disk-full and
attack trials from it too (tests/reliability/conftest.py `Forks`; their servers and fault
injections are the script tests/reliability/faults.py, run as prog python).

Protocol of the parent (`python tests/cli_forks.py`; one JSON object per line each way):
    {"op": "run", "prog": "t2v" | "uvicorn" | "python", "argv": [...], "env": {...}, "cwd": DIR,
     "out": FILE, "err": FILE} -> {"pid": N}   (prog python: argv is a script and its arguments)
    {"op": "poll", "pid": N} -> {"code": null} while it runs, else its exit status (-SIGNAL if killed)
The parent reaps a child as soon as it ends (SIGCHLD) and keeps its status for the poll: a dead
child is never left a zombie that still looks alive. It imports but never runs a torch op
(fork-safe).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# --- the parent process ---------------------------------------------------------------------------


def _child(req: dict[str, Any]) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits for its own children
        os.chdir(req["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        # appended to, as a shared log file would be; one file for both: one descriptor (`>f 2>&1`)
        for fd, name in ((1, "out"), (2, "err")):
            if name == "err" and req["err"] == req["out"]:
                os.dup2(1, 2)
                continue
            f = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(f, fd)
            os.close(f)
        os.environ.clear()
        os.environ.update(req["env"])
        _threads_from_env()
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdin, /dev/null
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        try:
            _main(req.get("prog", "t2v"), req["argv"])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - report and exit non-zero like a real process
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _main(prog: str, argv: list[str]) -> None:
    """What `python -m service.cli ARGV` (prog t2v), `python -m uvicorn ARGV` or `python ARGV`
    (prog python: a script and its arguments) runs."""
    if prog == "python":
        import runpy

        sys.argv = list(argv)
        sys.path[0] = str(Path(argv[0]).resolve().parent)  # as the interpreter sets it for a script
        runpy.run_path(argv[0], run_name="__main__")
        return
    sys.argv = [prog, *argv]
    if prog == "uvicorn":
        from uvicorn.main import main as uvicorn_main

        uvicorn_main()
    else:
        from service.cli import main

        main()


def _threads_from_env() -> None:
    """OpenMP (torch's and FAISS's) read OMP_NUM_THREADS when the parent imported them; a fresh
    interpreter would read the command's own value, so a child given one applies it."""
    n = os.environ.get("OMP_NUM_THREADS", "")
    if n.isdigit() and int(n) > 0:
        import faiss
        import torch

        torch.set_num_threads(int(n))
        faiss.omp_set_num_threads(int(n))


class _Children:
    """The parent's running children, reaped the moment they end (a SIGCHLD handler), and the exit
    statuses of those that ended (-SIGNAL if killed), kept for the poll."""

    def __init__(self) -> None:
        self.running: set[int] = set()
        self.ended: dict[int, int] = {}
        signal.signal(signal.SIGCHLD, lambda _sig, _frame: self.reap())

    def reap(self) -> None:
        # only known children, by pid: a child forked but not yet added is left for the next reap,
        # never reaped with its status lost (the handler may run between any two lines here)
        for pid in list(self.running):
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by a nested call of this handler
                continue
            if got:
                self.ended[pid] = os.waitstatus_to_exitcode(status)
                self.running.discard(pid)

    def add(self, pid: int) -> None:
        self.ended.pop(pid, None)  # a reused pid's old status
        self.running.add(pid)
        self.reap()  # it may have ended before it was added (its SIGCHLD found nothing to reap)

    def status(self, pid: int) -> int | None:
        if pid not in self.running and pid not in self.ended:
            raise ValueError(f"not a child of this parent: {pid}")
        return self.ended.get(pid)


def main() -> None:
    # everything the commands need, imported once (no torch ops run here)
    import faiss  # noqa: F401
    import open_clip  # noqa: F401
    import torch  # noqa: F401
    import uvicorn  # noqa: F401

    import indexer.ingest.pipeline  # noqa: F401
    import indexer.search.searcher  # noqa: F401
    import model  # noqa: F401
    import service.app  # noqa: F401
    import service.cli  # noqa: F401
    import service.cli.index  # noqa: F401

    children = _Children()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "poll":
            try:
                print(json.dumps({"code": children.status(int(req["pid"]))}), flush=True)
            except ValueError as e:  # a caller's mistake: said, and the parent serves on
                print(json.dumps({"error": str(e)}), flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            _child(req)
        children.add(pid)
        print(json.dumps({"pid": pid}), flush=True)


# --- the test side --------------------------------------------------------------------------------


class ForkedRun:
    """One forked `t2v` run: a Popen-like handle (pid, poll, wait, kill, send_signal) whose stdout
    and stderr are files, read by `output()`."""

    def __init__(self, forks: CliForks, pid: int, args: list[str], out: Path, err: Path) -> None:
        self.forks, self.pid, self.args, self.out, self.err = forks, pid, args, out, err
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.forks.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.05)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def output(self) -> tuple[str, str]:
        return self.out.read_text(), self.err.read_text()


class CliForks:
    """The parent process, started once per test session (the `t2v` fixture in tests/conftest.py)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__))],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self._read()) == {"ready": True}

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the CLI fork parent exited ({self.proc.wait()})")
        return line

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._lock:  # one question and its answer at a time (tests may ask from threads)
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            reply = dict(json.loads(self._read()))
        if "error" in reply:
            raise RuntimeError(f"the CLI fork parent: {reply['error']}")
        return reply

    def status(self, pid: int) -> int | None:
        code = self._ask({"op": "poll", "pid": pid})["code"]
        return None if code is None else int(code)

    def start(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path = REPO,
        prog: str = "t2v",
        out: Path | None = None,
        err: Path | None = None,
    ) -> ForkedRun:
        """Start `prog ARGS` (`t2v`, `uvicorn` or `python`: a script and its arguments); stdout and
        stderr go to `out` and `err` (the same file may be both; default: two new files)."""
        self.count += 1
        out = out or self.workdir / f"run-{self.count}.out"
        err = err or self.workdir / f"run-{self.count}.err"
        for path in (out, err):  # exist on return, as with Popen: callers read them at once
            path.touch()
        req = {
            "op": "run",
            "prog": prog,
            "argv": args,
            "env": env,
            "cwd": str(cwd),
            "out": str(out),
            "err": str(err),
        }
        return ForkedRun(self, int(self._ask(req)["pid"]), args, out, err)

    def run(
        self, args: list[str], env: dict[str, str], timeout: float, cwd: Path = REPO, prog: str = "t2v"
    ) -> subprocess.CompletedProcess[str]:
        """Like subprocess.run(capture_output=True, text=True): kills the run after `timeout` s."""
        run = self.start(args, env, cwd, prog)
        try:
            code = run.wait(timeout)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
            raise
        out, err = run.output()
        return subprocess.CompletedProcess([prog, *args], code, out, err)

    def close(self) -> None:
        """Kill the parent: it holds nothing to save, and an interpreter that imported torch takes
        seconds to shut down."""
        self.proc.kill()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    main()
