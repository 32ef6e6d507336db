"""Text-track settings (`T2V_TEXT__*`): which sources ingestion extracts and with which engines."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class TextSettings(BaseModel):
    subtitles: bool = Field(True, description="read embedded subtitle streams and sidecar .srt/.vtt files")
    # OCR and speech cost about as much as the visual encoding or more (docs/BENCHMARKS.md): opt-in
    ocr: bool = Field(False, description="on-screen text with Tesseract (skipped when it is not installed)")
    ocr_interval: float = Field(1.0, gt=0, description="seconds between frames read by OCR")
    ocr_lang: str = Field("eng", description="Tesseract language(s), e.g. 'eng+deu'")
    ocr_min_confidence: float = Field(60.0, ge=0, le=100, description="drop OCR words below this")
    speech: bool = Field(False, description="transcribe the audio track (when the video has one)")
    asr_engine: Literal["pocketsphinx", "whisper"] = Field(
        "pocketsphinx", description="'pocketsphinx' (bundled English model) or 'whisper' (asr_model)"
    )
    asr_model: Path | None = Field(
        None, description="faster-whisper model directory (CTranslate2) for asr_engine=whisper"
    )
    asr_language: str | None = Field(None, description="whisper: language code (None: detect)")
