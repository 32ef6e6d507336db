"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, JsonValue, field_validator

# store ids are SQLite integers: larger values overflowed into a 500 (found by API fuzzing)
VideoId = Annotated[int, Field(ge=0, le=2**63 - 1)]


Source = Literal["visual", "subtitles", "speech", "ocr"]  # what a search may fuse


# a query needs a character str.strip() keeps: the engine refuses a blank one ("query is empty",
# 422), the schema states it. Spelled out: regex engines disagree on \s (U+0085, U+001C..U+001F)
NON_BLANK: dict[str, JsonValue] = {
    "pattern": r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
}


class SearchRequest(BaseModel):
    query: str = Field(
        ..., min_length=1, json_schema_extra=NON_BLANK, description="free-text description of the moment"
    )
    # booleans and min_score are strict (0 is not false, false is not 0.0); an integer may come as
    # 37.0 (JSON Schema's integer) but never 2.5
    top_k: int = Field(10, ge=1, le=100, description="how many moments (or videos) to return")
    group_by_video: bool = Field(False, strict=True, description="one result per video: its best moment")
    moments_per_video: int = Field(
        1, ge=1, le=50, description="grouped: also return up to this many moments per video, in `more`"
    )
    video_ids: list[VideoId] | None = Field(None, description="restrict the search to these videos")
    min_score: float | None = Field(
        None, strict=True, allow_inf_nan=False, description="drop results scoring below this"
    )
    explain: bool = Field(
        False, strict=True, description="add per-result explanations (matched frames, views)"
    )
    sources: list[Source] | None = Field(
        None,
        min_length=1,
        description="rankings to fuse: visual (partial alignment) and the text tracks (subtitles, speech, "
        "ocr: full-text BM25); default all of them",
    )

    @field_validator("top_k", "moments_per_video", "video_ids", mode="before")
    @classmethod
    def _no_booleans(cls, v: object) -> object:
        # JSON true/false are not integers (pydantic's lax mode would take them as 1/0)
        if isinstance(v, bool) or (isinstance(v, list) and any(isinstance(x, bool) for x in v)):
            raise ValueError("must be an integer, not a boolean")
        return v


class FrameContribution(BaseModel):
    time: float = Field(..., description="seconds into the video")
    index: int = Field(..., description="frame row in the clip (0..T-1)")
    contribution: float = Field(..., description="this frame vector's additive share of the score")


class Explanation(BaseModel):
    """The score split exactly over the clip's stored vectors (frames + decomposition views)."""

    score: float = Field(..., description="sum of all contributions (equals the result score)")
    frames_contribution: float = Field(..., description="share carried by the T frame vectors")
    views_contribution: float = Field(..., description="share carried by the K view vectors")
    view_contributions: list[float] = Field(..., description="per view (K)")
    frame_times: list[float] = Field(..., description="the clip's T frame times, seconds")
    relevance: list[float] = Field(..., description="per-frame contribution along the clip (T)")
    top_frames: list[FrameContribution] = Field(..., description="frames ranked by contribution")


class TextTrack(BaseModel):
    source: str = Field(..., description="subtitles | speech | ocr")
    status: str = Field(..., description="found | none | skipped | failed")
    lines: int
    reason: str = Field(..., description="what was read, or why the source was skipped or failed")
    seconds: float = Field(..., description="time spent on this source at ingestion")


class TextMatch(BaseModel):
    source: str = Field(..., description="subtitles | speech | ocr")
    start: float = Field(..., description="seconds: when the line is said or shown")
    end: float = Field(..., description="seconds")
    text: str = Field(..., description="the matching line")


class Moment(BaseModel):
    video_id: int
    title: str
    start: float = Field(..., description="seconds")
    end: float = Field(..., description="seconds")
    score: float = Field(..., description="partial-alignment score")
    weak: bool = Field(False, description="scores below the library's weak-match line (`weak_below`)")
    best_frame_s: float = Field(..., description="time of the frame that carried the match (seconds)")
    thumbnail_url: str = Field(..., description="the frame at best_frame_s")
    stream_url: str
    explanation: Explanation | None = Field(None, description="present when explain was requested")
    visual_score: float | None = Field(
        None, description="partial-alignment score (null: visual not searched)"
    )
    sources: list[str] = Field(
        default_factory=list, description="rankings that placed this moment: visual, subtitles, speech, ocr"
    )
    matches: list[TextMatch] = Field(
        default_factory=list, description="matching text lines, best first; start/end are the first one's"
    )
    more: list[Moment] = Field(
        default_factory=list, description="grouped: the video's other moments, best first (moments_per_video)"
    )


class SearchResponse(BaseModel):
    query: str
    results: list[Moment]
    took_ms: float
    stages_ms: dict[str, float] = Field(default_factory=dict, description="time per search stage")
    weak_below: float | None = Field(
        None,
        description="scores below this are weak matches: the 0.9 quantile of the best scores of nonsense "
        "queries on this library (null while it is empty)",
    )


class Video(BaseModel):
    id: int
    title: str
    duration: float
    clips: int = Field(..., description="indexed moments (windows) of this video")
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None
    filename: str | None = Field(None, description="name of the file the video was ingested from")
    thumbnail_url: str
    stream_url: str
    text_tracks: list[TextTrack] | None = Field(
        None, description="GET /v1/videos/{id}: what each text source gave at ingestion"
    )


class VideoPage(BaseModel):
    items: list[Video]
    total: int
    offset: int
    limit: int


class IngestRequest(BaseModel):
    paths: list[str] = Field(..., min_length=1, description="absolute server paths under an allowed root")
    titles: list[str | None] | None = Field(
        None,
        description="optional titles: titles[i] names the file paths[i] names; a null or missing entry, "
        "a folder's files and entries past the paths get none (each job item shows its title)",
    )


class JobItem(BaseModel):
    index: int
    name: str
    title: str | None
    state: str = Field(..., description="queued | running | done | duplicate | failed")
    reason: str | None = None
    video_id: int | None = None


class Job(BaseModel):
    id: str
    kind: str = Field(..., description="paths | upload")
    state: str = Field(..., description="queued | running | done")
    created: float
    updated: float
    total: int
    finished: int
    progress: float = Field(..., ge=0, le=1)
    counts: dict[str, int]
    items: list[JobItem]


class JobPage(BaseModel):
    items: list[Job]
    total: int
    offset: int
    limit: int


class Deleted(BaseModel):
    id: int
    deleted: bool


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str = Field(..., description="ready | degraded (searches work; see problems)")
    model: str | None = None
    videos: int = 0
    clips: int = 0
    problems: list[str] = Field(default_factory=list, description="what is degraded (worker, store)")
