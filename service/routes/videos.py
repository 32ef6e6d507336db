"""The library: list, get, delete, thumbnail, stream."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from indexer.media.opened import OpenedMedia

from ..engine import Engine
from ..schemas import Deleted, Video, VideoPage
from .deps import engine, require_read_key, require_write_key

router = APIRouter(prefix="/v1/videos", tags=["videos"])

# store ids are SQLite integers: larger ids overflowed into a 500 (found by API fuzzing)
VideoIdPath = Annotated[int, PathParam(ge=0, le=2**63 - 1)]


@router.get("", response_model=VideoPage, dependencies=[Depends(require_read_key)])
async def list_videos(
    offset: int = Query(0, ge=0, le=2**63 - 1),
    limit: int = Query(50, ge=1),
    title: str | None = Query(None, description="case-insensitive substring of the title"),
    eng: Engine = Depends(engine),
) -> VideoPage:
    return await eng.list_videos(offset, limit, title)


@router.get("/{video_id}", response_model=Video, dependencies=[Depends(require_read_key)])
async def get_video(video_id: VideoIdPath, eng: Engine = Depends(engine)) -> Video:
    return await eng.get_video(video_id)


@router.delete("/{video_id}", response_model=Deleted, dependencies=[Depends(require_write_key)])
async def delete_video(video_id: VideoIdPath, eng: Engine = Depends(engine)) -> Deleted:
    await eng.delete_video(video_id)
    return Deleted(id=video_id, deleted=True)


@router.get(
    "/{video_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 304: {"description": "not modified (If-None-Match)"}},
    dependencies=[Depends(require_read_key)],
)
async def thumbnail(
    video_id: VideoIdPath,
    request: Request,
    t: float = Query(0.0, ge=0, description="seconds into the video"),
    eng: Engine = Depends(engine),
) -> Response:
    """The frame at `t` (to 0.1 s), `thumbnail_width` wide, as JPEG; cached by the browser for an
    hour, then revalidated by its ETag (304)."""
    thumb = await eng.thumbnail(video_id, t, request.headers.get("if-none-match"))
    headers = {"Cache-Control": "max-age=3600", "ETag": thumb.etag}
    if thumb.data is None:
        return Response(status_code=304, headers=headers)
    return Response(thumb.data, media_type="image/jpeg", headers=headers)


@router.get(
    "/{video_id}/stream",
    response_class=FileResponse,
    responses={
        200: {"content": {t: {} for t in ("video/mp4", "video/webm", "video/*", "application/octet-stream")}},
        206: {"description": "partial content (Range)"},
        416: {"description": "range not satisfiable"},
    },
    dependencies=[Depends(require_read_key)],
)
async def stream(request: Request, video_id: VideoIdPath, eng: Engine = Depends(engine)) -> FileResponse:
    """The video file; honours HTTP Range so a browser can seek.

    Served from the descriptor that was checked, with the video/* type of its container (never a
    type guessed from a name), `nosniff`, a CSP that lets nothing run, and a Content-Disposition."""
    opened, media_type = await eng.open_video(video_id)
    try:
        eng.check_range(request.headers.get("range"), opened.size)
    except BaseException:
        opened.close()
        raise
    name = f"video-{video_id}" + _EXTENSIONS.get(media_type or "", ".bin")
    return OpenedFileResponse(
        opened,
        media_type=media_type or "application/octet-stream",
        filename=name,
        # an unknown container is a download, never rendered
        content_disposition_type="inline" if media_type else "attachment",
        headers=MEDIA_HEADERS,
    )


# what a stored file is served with: nothing in it may run on this origin
MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_EXTENSIONS = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/ogg": ".ogv",
    "video/x-flv": ".flv",
    "video/mp2t": ".ts",
    "video/mpeg": ".mpg",
}


class OpenedFileResponse(FileResponse):
    """A FileResponse of an already opened, checked file: it reads `/proc/self/fd/N` (the same
    inode, whatever the name points to now) and closes the descriptor when the response ends."""

    def __init__(self, opened: OpenedMedia, **kwargs: Any) -> None:
        super().__init__(opened.name, stat_result=opened.st, **kwargs)
        self._opened = opened

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._opened.close()
