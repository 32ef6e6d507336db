"""Time reversal as a training signal: a clip played backwards, with the caption it then has.

A set of frame vectors without order cannot tell "moving left" from "moving right" when no single
frame shows the direction (no motion blur or trails), and random batches rarely hold two clips
that differ only there. Reversing a clip's frames and rewriting its caption accordingly ("moving
left" -> "moving right", "A, then B" -> "B, then A") gives, in the same batch, two clips with the
same frames in opposite order and two captions that differ only in direction and order: only a
model that reads the frame order can match both (the arrow-of-time idea of self-supervised
video learning, used here as a contrastive pair). The word pairs are data
(`configs/text/time_reversal.json`), so another language or vocabulary needs no code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError

DEFAULT_LEXICON = Path(__file__).parent / "configs" / "text" / "time_reversal.json"


@dataclass(frozen=True)
class ReversalLexicon:
    swap: dict[str, str]  # word -> the word it becomes when time runs backwards (both ways)
    sequence: tuple[str, ...]  # markers joining consecutive parts ("A, then B"), tried in order
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = "|".join(map(re.escape, sorted(self.swap, key=len, reverse=True)))
        # compiled once: reverse() runs for every caption of a training set
        object.__setattr__(self, "_pattern", re.compile(rf"\b({words})\b", re.IGNORECASE) if words else None)

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> ReversalLexicon:
        p = Path(path) if path is not None else DEFAULT_LEXICON
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as e:  # ValueError: invalid JSON or not UTF-8
            raise ConfigError(f"time-reversal lexicon {p}: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("swap", []), list):
            raise ConfigError(
                f'time-reversal lexicon {p}: expected {{"swap": [[word, word], ...], "sequence": [...]}}'
            )
        swap: dict[str, str] = {}
        for pair in data.get("swap", []):
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(w, str) and w for w in pair)
            ):
                raise ConfigError(f"time-reversal lexicon {p}: each swap entry is two words, got {pair!r}")
            a, b = (w.lower() for w in pair)
            if a in swap or b in swap or a == b:
                raise ConfigError(f"time-reversal lexicon {p}: {a!r}/{b!r} listed twice")
            swap[a], swap[b] = b, a
        seq = data.get("sequence", [])
        if not isinstance(seq, list) or not all(isinstance(s, str) and s.strip() for s in seq):
            raise ConfigError(f"time-reversal lexicon {p}: sequence markers must be non-empty strings")
        return cls(swap=swap, sequence=tuple(seq))

    def reverse(self, caption: str) -> str:
        """The caption of the same clip played backwards (equal to `caption` if nothing changes)."""
        parts, marker = [caption], ""
        for m in self.sequence:  # the first marker present splits the caption into its steps
            if m in caption:
                parts, marker = caption.split(m), m
                break
        pattern = self._pattern
        if pattern is not None:

            def flip(m: re.Match[str]) -> str:
                word = self.swap[m.group(0).lower()]
                return word.capitalize() if m.group(0)[0].isupper() else word

            parts = [pattern.sub(flip, p) for p in parts]
        if len(parts) > 1 and caption[:1].isupper():  # the sentence's capital stays at its start
            parts = [p[:1].lower() + p[1:] for p in parts]
            parts[-1] = parts[-1][:1].upper() + parts[-1][1:]
        return marker.join(reversed(parts))
