"""How `t2v search` shows the text a moment matched: "said at 1:23: ..." with the query words marked."""

from __future__ import annotations

import re
from collections.abc import Iterable

from service.cli.common import format_time

VERBS = {"subtitles": "subtitled", "speech": "said", "ocr": "on screen"}


def highlight(text: str, query: str) -> str:
    """The line with every query word marked *like this* (case-insensitive, whole words)."""
    words = sorted({w.lower() for w in re.findall(r"\w+", query)}, key=len, reverse=True)
    if not words:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    return pattern.sub(lambda m: f"*{m.group(1)}*", text)


def match_lines(matches: Iterable[object], query: str, indent: str = "    ") -> list[str]:
    """One line per matched text line (objects with source/start/text, or their REST dicts)."""
    out = []
    for m in matches:
        d = m if isinstance(m, dict) else vars(m)
        source, start, text = str(d["source"]), float(d["start"]), str(d["text"])
        verb = VERBS.get(source, source)
        out.append(f"{indent}{verb} at {format_time(start)}: {highlight(text, query)}")
    return out
