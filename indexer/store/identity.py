"""Model identity: what makes two models' vectors comparable, and the check made on every open."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.store.records import ModelMismatchError

if TYPE_CHECKING:
    from model import T2VParser

# Identity fields that do not change what the stored vectors mean.
_INFO_CONFIG_FIELDS = {"name", "diversity_weight"}


def store_identity(model: T2VParser) -> dict[str, Any]:
    """model.model_identity plus a weights fingerprint (what makes two models' vectors comparable).

    The fingerprint is the checkpoint hash, the open_clip pretrained tag, or (random init) a hash
    of the text-side weights, so a text-only service model gets the same identity as the indexer's.
    """
    from model import model_identity, state_hash

    ident = dict(model_identity(model))
    cfg = model.config
    if ident.get("checkpoint_sha256"):
        weights = f"checkpoint:{ident['checkpoint_sha256']}"
    elif cfg.pretrained:
        weights = f"pretrained:{cfg.pretrained}"
    else:
        skip = ("visual", "frame_mlp", "video_decoder")
        text_side = {k: v for k, v in model.state_dict().items() if not any(s in k for s in skip)}
        weights = f"random:{state_hash(text_side)}"
    ident["weights"] = weights
    return ident


def searched_views(identity: dict[str, Any]) -> int:
    """K when the store's model is a trained checkpoint with K decomposition views, else 0. A
    trained model's views carry the matches (issue 17: no word vector of a trained demo query
    reached the exact 10th best score), so stage 1 searches them first and the token-level index
    reaches further (`vector_index.auto_kind`); random or pretrained-only weights have untrained
    views, and zero-shot / meanP models none."""
    trained = str(identity.get("weights") or "").startswith("checkpoint:")
    return int(identity.get("num_tokens") or 0) if trained else 0


def identity_differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Human-readable differences between two identities (empty when compatible)."""
    diffs: list[str] = []
    for key in ("dim", "vectors_per_clip", "frames", "num_tokens", "weights", "checkpoint_sha256"):
        if key in stored and key in given and stored[key] != given[key]:
            diffs.append(f"{key}: store has {stored[key]!r}, model has {given[key]!r}")
    a, b = stored.get("config", {}), given.get("config", {})
    for key in sorted(set(a) | set(b)):
        if key not in _INFO_CONFIG_FIELDS and a.get(key) != b.get(key):
            diffs.append(f"config.{key}: store has {a.get(key)!r}, model has {b.get(key)!r}")
    return diffs


def check_identity(root: Path, stored: dict[str, Any], given: dict[str, Any]) -> None:
    """ModelMismatchError when the store at `root` was built with a model other than `given`."""
    diffs = identity_differences(stored, given)
    if diffs:
        raise ModelMismatchError(
            f"the store at {root} was built with a different model ("
            + "; ".join(diffs)
            + f"). Search it with the model it was built with, or rebuild it for this model "
            f"with `t2v index reindex --index {root}`."
        )
