"""A pre-imported parent that forks the real CLI or the real server on request, so that a kill -9
trial costs a fork instead of a fresh interpreter importing torch (~15 s on a loaded 2-core host).

Protocol (one JSON object per line on stdin, one reply line on stdout):
    {"kind": "cli", "argv": [...], "env": {...}, "log": "file"}    -> {"pid": N}
    {"kind": "serve", "port": P, "env": {...}, "log": "file"}      -> {"pid": N}
    optional "enospc_fsync": true makes every os.fsync in the child fail with ENOSPC;
    optional "faiss_write_fault": PATH makes faiss.write_index fail (a full disk) while PATH exists;
    optional "thumbnail_swap": PATH (a JSON [victim, target]) replaces victim by a symlink to target
    right before the next thumbnail's ffmpeg runs (after the server checked the file), once.
The children run exactly the code a user runs (`service.cli.main`, uvicorn with
`service.app:create_app`); this process only imports and never runs torch ops (fork-safe).
Children are reaped automatically (SIGCHLD ignored), so a killed pid simply disappears.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any


def _child(req: dict[str, Any]) -> None:
    fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.update(req["env"])
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if req.get("enospc_fsync"):
        _inject_enospc()
    if req.get("faiss_write_fault"):
        _inject_faiss_write_fault(req["faiss_write_fault"])
    if req.get("thumbnail_swap"):
        _inject_thumbnail_swap(req["thumbnail_swap"])
    code = 0
    try:
        if req["kind"] == "cli":
            from service.cli import main

            sys.argv = ["t2v", *req["argv"]]
            main()
        else:
            import uvicorn

            from service.header_limit import header_timeout_protocol
            from service.settings import ServiceSettings

            uvicorn.run(
                "service.app:create_app",
                factory=True,
                host="127.0.0.1",
                port=int(req["port"]),
                log_level="warning",
                http=header_timeout_protocol(ServiceSettings().header_timeout),  # as `t2v serve`
            )
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - report and exit non-zero like a real process
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _inject_enospc() -> None:
    """Fault injection: every fsync fails with ENOSPC, as a full disk reports delayed allocation."""
    import errno

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.fsync = fsync


def _inject_faiss_write_fault(flag: str) -> None:
    """Fault injection: writing a FAISS file fails as on a full disk (after writing part of it)
    while the file `flag` exists."""
    import faiss

    real = faiss.write_index

    def write_index(index: object, path: str) -> None:
        if os.path.exists(flag):
            with open(path, "wb") as f:
                f.write(b"\0" * 4096)
            raise RuntimeError("Error in faiss::write_index: fwrite failed: No space left on device")
        real(index, path)

    faiss.write_index = write_index


def _inject_thumbnail_swap(flag: str) -> None:
    """Fault injection: the race a thumbnail must survive, made certain. While `flag` exists, the
    next thumbnail extraction first swaps the file it was asked for for a symlink to an outside
    file (the server has checked it already), then removes `flag`."""
    import service.engine

    real = service.engine.jpeg_at

    def jpeg_at(path: str, t: float, width: int, *args: Any, **kwargs: Any) -> bytes:
        if os.path.exists(flag):
            with open(flag) as f:
                victim, target = json.load(f)
            os.unlink(victim)
            os.symlink(target, victim)
            os.unlink(flag)
        return real(path, t, width, *args, **kwargs)

    service.engine.jpeg_at = jpeg_at  # type: ignore[assignment]


def main() -> None:
    # everything the children need, imported once (no torch ops run here)
    import faiss  # noqa: F401
    import torch  # noqa: F401
    import uvicorn  # noqa: F401

    import indexer.ingest.pipeline  # noqa: F401
    import indexer.search.searcher  # noqa: F401
    import model  # noqa: F401
    import service.app  # noqa: F401
    import service.cli  # noqa: F401
    import service.cli.index  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        print(json.dumps({"pid": pid}), flush=True)


if __name__ == "__main__":
    main()
