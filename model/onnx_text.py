"""The query side on ONNX Runtime: text tower + text ADT decoder exported once, run without torch autograd.

    enc = OnnxTextEncoder.for_model(model, cache_dir, precision="int8", threads=1)  # exports if needed
    sets = enc.encode_texts(["a man slices onions"])    # TextSets, as T2VParser.encode_texts

Why: on a CPU the torch text tower is most of a search (ViT-B/32: ~53 of ~70 ms, issue 17). The
graph takes only the real tokens (SOT..EOT) with a dynamic length, so a short query costs a short
sequence, and int8 (dynamic quantisation of the MatMul weights) runs several times faster than
torch fp32 at one thread. Rankings are checked against the torch path in tests and the benchmark.

The exported file is cached under `cache_dir`, named by a hash of the config and the text-side
weights (the same weights always reuse it); exporting needs no network, only the loaded model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import state_hash
from .fileio import atomic_path
from .onnx_cache import cpu_session, load_checked
from .onnx_graph import export_raw, prepare_graph
from .t2vparser import T2VParser, TextSets

if TYPE_CHECKING:
    import onnxruntime


Precision = Literal["fp32", "int8"]
FORMAT = 2  # bump when the graph's inputs/outputs or the export change
_TEXT_SKIP = ("visual", "frame_mlp", "video_decoder")  # video-side weights: not in the graph


class _QueryGraph(nn.Module):
    """(1, n) token ids SOT..EOT -> (1, n+K, D) L2-normalised query rows (tokens ; views)."""

    def __init__(self, model: T2VParser) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor) -> Tensor:
        m = self.model
        tower = m.backbone.text_tower
        n = ids.shape[1]
        x = tower.token_embedding(ids) + tower.positional_embedding[:n]  # (1, n, W)
        mask = tower.attn_mask
        x = tower.transformer(x, attn_mask=None if mask is None else mask[:n, :n])
        x = tower.ln_final(x)
        proj = tower.text_projection
        tokens = proj(x) if isinstance(proj, nn.Linear) else x @ proj  # (1, n, D)
        pooled = tokens[:, -1]  # (1, D): EOT is the last real token
        if m.text_decoder is None or m.query_tokens is None:  # zero-shot / meanP: {e}
            return F.normalize(pooled, dim=-1).unsqueeze(1)  # (1, 1, D)
        views = m.text_decoder(m.query_tokens, tokens)  # (1, K, D): every memory row is valid
        views_plus = m._plus(views, pooled)
        return F.normalize(torch.cat([tokens, views_plus], dim=1), dim=-1)  # (1, n+K, D)


def _eot_positions(model: T2VParser, tokens: Tensor) -> Tensor:
    """(B, L) token ids -> (B,) position of each text's EOT (as `ClipBackbone.encode_tokens`)."""
    tower = model.backbone.text_tower
    eos_id = getattr(tower, "text_eos_id", None)
    if getattr(tower, "text_pool_type", "argmax") == "eos" and eos_id is not None:
        return (tokens == eos_id).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)  # the EOT id is the largest in CLIP's vocabulary


def graph_key(model: T2VParser) -> str:
    """Names the exported graph: the config and the text-side weights (not the image tower)."""
    text_side = {k: v for k, v in model.state_dict().items() if not any(s in k for s in _TEXT_SKIP)}
    ident = {"config": model.config.to_dict(), "weights": state_hash(text_side), "format": FORMAT}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def export_raw_graph(model: T2VParser, path: Path) -> Path:
    """The torch export as it comes (dynamic sequence length), not yet folded or rewritten."""
    graph = _QueryGraph(model)  # export_raw puts it in eval mode on the CPU
    context = int(model.backbone.text_tower.positional_embedding.shape[0])
    ids = model.tokenize(["a query to trace the graph with"])
    example = ids[:, : int(_eot_positions(model, ids)[0]) + 1]  # (1, n)
    n = torch.export.Dim("n", min=2, max=context)
    return export_raw(graph, example, path, "ids", "rows", {1: n})


def export_query_graph(model: T2VParser, path: Path) -> Path:
    """Write the fp32 query graph as ONNX at `path`, with a dynamic sequence length.

    The raw export is constant-folded and every linear layer becomes a MatMul with a constant
    weight (`onnx_graph.linear_weights_as_matmuls`): ONNX Runtime pre-packs those once, which made
    the ViT-B/32 query 1.3x faster than the Gemm/split graph at the same values, and the int8
    quantiser can reach every weight.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        return prepare_graph(export_raw_graph(model, Path(tmp) / "raw.onnx"), path)


def quantize_graph(fp32: Path, path: Path) -> Path:
    """int8 weights for every linear layer (dynamic quantisation: activations quantised per run).

    `fp32` is the exported graph, where every linear weight is already a MatMul constant.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the quantiser writes a scratch file named after its input beside it and removes it after:
    # it reads a private link of `fp32`, or two processes filling one cache remove each other's
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".quantize-") as tmp, atomic_path(path) as out:
        src = Path(tmp) / "fp32.onnx"
        try:
            os.link(fp32, src)  # same directory tree: no copy of a 400 MB graph
        except OSError:
            shutil.copyfile(fp32, src)
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return path


class OnnxTextEncoder:
    """`encode_texts` on ONNX Runtime (CPU), for one query at a time, as the service searches."""

    def __init__(self, model: T2VParser, session: onnxruntime.InferenceSession, precision: Precision) -> None:
        self.model = model  # for the tokenizer and the config; its weights are not used here
        self.session = session
        self.precision = precision

    @classmethod
    def for_model(
        cls, model: T2VParser, cache_dir: Path, precision: Precision = "int8", threads: int = 1
    ) -> OnnxTextEncoder:
        """Load the cached graph of this model, exporting it first when there is none. A cached
        file that does not load or does not reproduce the model's rows (`agrees`) is exported
        again; a fresh export that does not reproduce them raises RuntimeError."""
        key = graph_key(model)
        fp32 = Path(cache_dir) / f"query-{key}-fp32.onnx"
        path = Path(cache_dir) / f"query-{key}-{precision}.onnx"

        def export() -> None:
            if precision == "fp32":
                export_query_graph(model, fp32)
                return
            # quantised from a checked fp32 graph: a damaged cached one is exported again (by its
            # own load_checked), not quantised into an int8 graph that fails at every start
            cls.for_model(model, cache_dir, "fp32", threads)
            quantize_graph(fp32, path)

        return load_checked(
            path,
            lambda: cls(model, cpu_session(path, threads), precision),
            OnnxTextEncoder.agrees,
            export,
            "query graph",
            stale=(fp32,),
        )

    def agrees(self) -> bool:
        """Do this graph's rows for a probe query match the torch model's (shape and cosine)? Catches
        a damaged or stale cache file before it answers a query."""
        probe = ["a red circle moving left, then a blue square"]
        with torch.no_grad():
            want = self.model.encode_texts(probe)
        got = self.encode_texts(probe)
        w, g = want.vectors[0][want.mask[0]], got.vectors[0][got.mask[0]]  # (n, D) each
        if w.shape != g.shape:
            return False
        cosine = float(F.cosine_similarity(w, g, dim=-1).min())
        return cosine >= (0.9999 if self.precision == "fp32" else 0.9)

    def encode_texts(self, texts: list[str]) -> TextSets:
        """Texts -> TextSets (B, n_max, D) with a validity mask; one graph run per text."""
        tokens = self.model.tokenize(texts)  # (B, L)
        rows = []
        for ids, eot in zip(tokens.numpy(), _eot_positions(self.model, tokens).tolist(), strict=True):
            out = self.session.run(None, {"ids": ids[None, : eot + 1].astype(np.int64)})[0]  # (1, n, D)
            rows.append(torch.from_numpy(out[0]))
        n_max = max(len(r) for r in rows)
        vectors = torch.zeros(len(rows), n_max, rows[0].shape[1])
        mask = torch.zeros(len(rows), n_max, dtype=torch.bool)
        for i, r in enumerate(rows):
            vectors[i, : len(r)] = r
            mask[i, : len(r)] = True
        return TextSets(vectors=vectors, mask=mask)

    def warm(self) -> None:
        """One run, so that the first user query does not pay for session set-up."""
        self.encode_texts(["warm up"])
