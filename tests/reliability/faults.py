"""The programs of the reliability trials, forked from the suite's fork server (tests/cli_forks.py,
prog python; `Forks` in tests/reliability/conftest.py builds the requests): the real CLI or the
real server, with faults injected first.

    python tests/reliability/faults.py FAULTS t2v ARGS...   `t2v ARGS` (`service.cli.main`)
    python tests/reliability/faults.py FAULTS serve PORT    uvicorn with `service.app:create_app` on
                                                            127.0.0.1:PORT (warnings only), with the
                                                            header deadline `t2v serve` has
FAULTS, a JSON object of any of:
    "enospc_fsync": true   every os.fsync fails with ENOSPC;
    "faiss_write_fault": PATH   faiss.write_index fails (a full disk) while PATH exists;
    "thumbnail_swap": PATH   (a JSON [victim, target]) replaces victim by a symlink to target right
                             before the next thumbnail's ffmpeg runs (after the server checked the
                             file), once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any


def _inject_enospc(_: object) -> None:
    """Every fsync fails with ENOSPC, as a full disk reports delayed allocation."""
    import errno

    def fsync(fd: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.fsync = fsync


def _inject_faiss_write_fault(flag: str) -> None:
    """Writing a FAISS file fails as on a full disk (after writing part of it) while the file
    `flag` exists."""
    import faiss

    real = faiss.write_index

    def write_index(index: Any, path: str) -> None:
        if os.path.exists(flag):
            with open(path, "wb") as f:
                f.write(b"\0" * 4096)
            raise RuntimeError("Error in faiss::write_index: fwrite failed: No space left on device")
        real(index, path)

    faiss.write_index = write_index  # type: ignore[assignment]


def _inject_thumbnail_swap(flag: str) -> None:
    """The race a thumbnail must survive, made certain. While `flag` exists, the next thumbnail
    extraction first swaps the file it was asked for for a symlink to an outside file (the server
    has checked it already), then removes `flag`."""
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


FAULTS: dict[str, Callable[[Any], None]] = {
    "enospc_fsync": _inject_enospc,
    "faiss_write_fault": _inject_faiss_write_fault,
    "thumbnail_swap": _inject_thumbnail_swap,
}


def _serve(port: int) -> None:
    import uvicorn

    from service.header_limit import header_timeout_protocol
    from service.settings import ServiceSettings

    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=header_timeout_protocol(ServiceSettings().header_timeout),  # as `t2v serve`
    )


def main(argv: list[str]) -> None:
    faults, program, args = json.loads(argv[0]), argv[1], argv[2:]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise SystemExit(f"faults.py: unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}")
    for name, arg in faults.items():
        FAULTS[name](arg)
    if program == "t2v":
        from service.cli import main as t2v

        sys.argv = ["t2v", *args]
        t2v()
    elif program == "serve":
        _serve(int(args[0]))
    else:
        raise SystemExit(f"faults.py: the program is t2v or serve, not {program!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
