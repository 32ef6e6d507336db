"""API-key check for write endpoints and path confinement for server-side ingestion."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request

from .errors import CrossSite, ForbiddenPath, InvalidInput, Unauthorized


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def check_api_key(request: Request, keys: list[str]) -> None:
    """No keys configured: open. Otherwise one of them must be presented (constant-time compare)."""
    if not keys:
        return
    given = presented_key(request)
    if given is None:
        raise Unauthorized("this endpoint needs an API key (header X-API-Key)")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise Unauthorized("invalid API key")


def check_same_origin(request: Request, allowed_origins: list[str]) -> None:
    """Refuse a write sent by a page of another site, with or without API keys.

    A multipart POST needs no CORS preflight, so without this any web page a user opens could
    fill (or empty) their library. Browsers say where a request comes from: `Sec-Fetch-Site`
    (modern browsers) and `Origin` (every cross-origin POST/DELETE). A request that carries
    neither is not from a browser page (curl, the CLI) and passes; the service's own page is
    same-origin. Origins listed in `cors_origins` ('*': any) may write too.
    """
    origin = request.headers.get("origin")
    if origin is not None and ("*" in allowed_origins or origin in allowed_origins):
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CrossSite(f"cross-site write refused (Sec-Fetch-Site: {site})")
    if origin is None:
        return
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")} - {""}
    netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
    if not netloc or netloc not in {h.lower() for h in hosts}:
        raise CrossSite(f"cross-site write refused (Origin {origin!r} is not this service)")


def confine_path(raw: str, roots: list[Path]) -> Path:
    """The real path of `raw` if it lies inside one of `roots` after resolving symlinks, else refuse.

    `..` components are refused outright (even when they would stay inside a root), relative paths
    too, so what is logged is what was read.
    """
    if not roots:
        raise ForbiddenPath("server-side ingestion is disabled: no allowed roots are configured")
    if "\x00" in raw:
        raise ForbiddenPath("path contains a NUL byte")
    p = Path(raw)
    if not p.is_absolute():
        raise ForbiddenPath(f"path must be absolute: {raw!r}")
    if ".." in p.parts:
        raise ForbiddenPath(f"path must not contain '..': {raw!r}")
    real = Path(os.path.realpath(p))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if real == real_root or real.is_relative_to(real_root):
            return real
    raise ForbiddenPath(f"path is outside the allowed roots (symlinks are resolved): {raw!r}")


def expand_confined(paths: list[str], roots: list[Path], limit: int) -> list[tuple[Path, int | None]]:
    """Each path confined (`confine_path`); a folder becomes its files, recursively, in sorted
    order, hidden entries skipped, symlinked folders not followed. A file inside that is a
    symlink leading outside the roots is kept as named: the worker, which opens without
    following it, fails that item alone. More than `limit` files: refused (422) without walking
    further. With each file: the index of the entry that named it, None for a folder's files."""
    out: list[tuple[Path, int | None]] = []
    for i, raw in enumerate(paths):
        real = confine_path(raw, roots)
        if not real.is_dir():
            out.append((real, i))
        else:
            for top, dirs, files in os.walk(real):  # followlinks=False: a linked folder stays out
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    f = Path(top) / name
                    resolved = Path(os.path.realpath(f))
                    inside = any(resolved.is_relative_to(os.path.realpath(r)) for r in roots)
                    out.append((resolved if inside else f, None))
                    if len(out) > limit:
                        break
                if len(out) > limit:
                    break
        if len(out) > limit:
            raise InvalidInput(f"more than {limit} files in one job (the limit); ingest folders separately")
    return out
