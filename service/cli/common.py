"""What every `t2v` command shares: one error line, one exit-code policy, one time format.

Exit codes, the same for every command:
    0  success.
    1  the command ran but some items failed: files `index add`/`reindex` could not index, unknown
       ids given to `index rm`, problems found by `index verify`, failed items of an `ingest` job.
    2  the command cannot run: bad usage or input (a bad flag, an empty query, a missing store,
       config, checkpoint, video or data set, weights not cached, a model the store does not fit,
       an unreachable or refusing server, a full disk). Typer's own usage errors exit 2 as well.

An error the command cannot get past is exactly one line on stderr, `error: <message>`: either
`fail()`, or a domain exception of model/ or indexer/ (ConfigError, CheckpointError,
WeightsNotFoundError, StoreError, VideoError, DatasetError, ...) turned into that line by
`cli_errors()`, which every command of a `CliTyper` runs under. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer

EXIT_SOME_FAILED = 1
EXIT_CANNOT_RUN = 2

# public module -> the user-facing exception classes it exports. Looked up in sys.modules only: an
# exception whose module was never imported cannot have been raised, and importing model/ on an
# error path would pull in torch. tests/cli/test_exit_codes.py checks that every name resolves.
DOMAIN_ERRORS = {
    "model": ("ConfigError", "CheckpointError", "WeightsNotFoundError"),
    "indexer.store": ("StoreError",),
    "indexer.media.video": ("VideoError",),
    "indexer.corpora.datasets": ("DatasetError",),
    "indexer.ingest.distributed": ("DistributedError",),
    "indexer.report.figures": ("FigureError",),
    "service.cli.remote": ("RemoteError",),
    "service.settings": ("SettingsInvalid",),
}

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_CANNOT_RUN) -> NoReturn:
    """Print `error: <message>` on stderr and exit with `code`; a multi-line message (a parser's
    report) is joined into the one line."""
    one_line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    typer.echo(f"error: {one_line}", err=True)
    raise typer.Exit(code)


def domain_errors() -> tuple[type[BaseException], ...]:
    """The imported domain exception classes (see DOMAIN_ERRORS)."""
    found: list[type[BaseException]] = []
    for module, names in DOMAIN_ERRORS.items():
        mod = sys.modules.get(module)
        found.extend(getattr(mod, n) for n in names if mod is not None and hasattr(mod, n))
    return tuple(found)


@contextmanager
def cli_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Domain exceptions (and `extra`, e.g. ValueError for a config parser) become one `fail()` line."""
    try:
        yield
    except Exception as e:
        if not isinstance(e, domain_errors() + extra):
            raise
        fail(str(e))


class CliTyper(typer.Typer):
    """A Typer app whose every command runs under cli_errors(), so no command can forget it."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(f: F) -> F:
            @functools.wraps(f)  # keeps the signature and docstring typer builds the command from
            def run(*a: Any, **kw: Any) -> Any:
                with cli_errors():
                    return f(*a, **kw)

            register(run)
            return f

        return decorator


def format_time(seconds: float) -> str:
    """A moment's time as `m:ss.ss`, or `h:mm:ss.ss` from one hour on."""
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:05.2f}" if h else f"{m}:{s:05.2f}"
