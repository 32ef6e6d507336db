"""Hard negatives for contrastive training: for each clip, the clips whose captions are closest.

With random batches, two clips whose captions differ in one word ("moving left" / "moving right",
"A, then B" / "B, then A") rarely meet, so the loss never has to tell them apart. Putting such
neighbours in the same batch makes motion and order words carry loss. Closeness is the Jaccard
overlap of the caption words (all captions of a clip pooled), which needs no labels and works for
any data set.
"""

from __future__ import annotations

import re

import numpy as np

_BLOCK = 1024  # rows of the (N, N) overlap computed at once: bounds memory for large data sets


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def caption_neighbours(clip_captions: list[list[str]], keep: int = 8) -> list[np.ndarray]:
    """Per clip, up to `keep` other clips with the most similar (but not identical) word sets,
    most similar first. clip_captions: the captions of each clip (a clip without any gets none)."""
    sets = [set().union(*map(_words, caps)) if caps else set() for caps in clip_captions]
    vocab = {w: i for i, w in enumerate(sorted(set().union(*sets)))}
    x = np.zeros((len(sets), max(1, len(vocab))), dtype=np.float32)  # (N, V) word incidence
    for i, s in enumerate(sets):
        x[i, [vocab[w] for w in s]] = 1.0
    sizes = x.sum(1)  # (N,)
    out: list[np.ndarray] = []
    for start in range(0, len(sets), _BLOCK):
        inter = x[start : start + _BLOCK] @ x.T  # (b, N) shared words
        union = sizes[start : start + _BLOCK, None] + sizes[None, :] - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        jac[jac >= 1.0] = -1.0  # the clip itself and clips with the same words are no negatives
        jac[:, sizes == 0] = -1.0
        for row in jac:
            order = np.argsort(-row, kind="stable")[:keep]
            out.append(order[row[order] > 0].astype(np.int64))
    return out


def add_hard_negatives(
    clips: np.ndarray,
    neighbours: list[np.ndarray],
    n_hard: int,
    eligible: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replace the last `n_hard` of the batch's distinct `clips` by neighbours of its first clips
    (a random one of each anchor's closest), falling back to random eligible clips; still distinct."""
    keep = clips[: len(clips) - n_hard]
    chosen = set(int(c) for c in keep)
    extra: list[int] = []
    for anchor in keep:
        if len(extra) == n_hard:
            break
        options = [int(c) for c in neighbours[int(anchor)] if int(c) not in chosen]
        if options:
            pick = options[int(rng.integers(len(options)))]
            extra.append(pick)
            chosen.add(pick)
    rest = [int(c) for c in eligible if int(c) not in chosen]
    while len(extra) < n_hard and rest:
        extra.append(rest.pop(int(rng.integers(len(rest)))))
    return np.concatenate([keep, np.array(extra, dtype=keep.dtype)])
