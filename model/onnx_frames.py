"""The image tower on ONNX Runtime: frames encoded at ingestion without torch, on a CPU.

    tower = OnnxFrameEncoder.for_model(model, cache_dir, threads=2)   # exports if needed
    feats = tower(frames)          # (N, 3, S, S) preprocessed -> (N, D), as backbone.encode_frames

Why: on a CPU the image tower is most of an ingestion. Measured on the 2-core EPYC development box
(`bench/bench_frame_graph.py`, ViT-B/32): ONNX Runtime ran the same tower 1.7-2.5x faster than
torch (whose MKL kernels are slow on that CPU) with rows within 4e-6 of torch's (cosine 1.000000).
The rows are not bit-identical to torch's, so the setting that chooses it (`frame_encoder`) keeps
torch as the default: stores written by different producers (CLI, service, Ray, GPU) then hold the
same bytes for the same video.

The graph (dynamic batch) is cached under `cache_dir`, named by a hash of the config and the
image tower's weights; exporting needs no network, only the loaded model.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import state_hash
from .onnx_cache import cpu_session, load_checked
from .onnx_graph import export_raw, prepare_graph
from .t2vparser import T2VParser

if TYPE_CHECKING:
    import onnxruntime


FORMAT = 1  # bump when the graph's inputs/outputs or the export change
PROBE_IMAGES = 4  # images of the load-time check against torch
MAX_IMAGES = 1024  # upper bound of the exported (dynamic) batch dimension
CALL_IMAGES = 256  # images per graph run: larger calls are cut into chunks


class _FrameGraph(nn.Module):
    """(B, 3, S, S) preprocessed frames -> (B, D) projected CLS vectors (not normalised)."""

    def __init__(self, model: T2VParser) -> None:
        super().__init__()
        self.clip = model.backbone.clip

    def forward(self, frames: Tensor) -> Tensor:
        return self.clip.encode_image(frames)  # type: ignore[no-any-return]


def frame_graph_key(model: T2VParser) -> str:
    """Names the exported graph: the backbone config and the image tower's weights."""
    visual = model.backbone.clip.visual
    ident = {
        "backbone": model.config.backbone,
        "weights": state_hash(visual.state_dict()),
        "format": FORMAT,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def export_frame_graph(model: T2VParser, path: Path) -> Path:
    """Write the image tower as ONNX at `path` (dynamic batch up to MAX_IMAGES), folded and with every
    linear layer a MatMul with a constant weight, as the query graph (`onnx_graph.prepare_graph`).
    Raises RuntimeError when the export came out with a fixed batch."""
    size = model.backbone.preprocess.size
    batch = torch.export.Dim("batch", min=1, max=MAX_IMAGES)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        raw = export_raw(_FrameGraph(model), torch.zeros(2, 3, size, size), Path(tmp) / "raw.onnx",
                         "frames", "features", {0: batch})  # fmt: skip
        prepare_graph(raw, path)
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    # a forward hook or a branch on the batch size makes torch.export fix it: such a graph cannot
    # serve a video's frames
    if not dims[0].dim_param:
        path.unlink()
        raise RuntimeError(f"the image tower exported with a fixed batch of {dims[0].dim_value}")
    return path


class OnnxFrameEncoder:
    """Image-tower vectors on ONNX Runtime (CPU): `encoder(frames)` as `clip.encode_image(frames)`."""

    def __init__(self, model: T2VParser, session: onnxruntime.InferenceSession) -> None:
        self.model = model  # for the load-time check; its tower is not run per frame
        self.session = session

    @classmethod
    def for_model(cls, model: T2VParser, cache_dir: Path, threads: int = 1) -> OnnxFrameEncoder:
        """Load the cached graph of this model's image tower, exporting it first when there is none.
        A cached file that does not load or does not reproduce the tower (`agrees`) is exported
        again; a fresh export that does not reproduce it raises RuntimeError."""
        path = Path(cache_dir) / f"frames-{frame_graph_key(model)}.onnx"
        return load_checked(
            path,
            lambda: cls(model, cpu_session(path, threads)),
            OnnxFrameEncoder.agrees,
            lambda: export_frame_graph(model, path),
            "frame graph",
        )

    def agrees(self) -> bool:
        """Do this graph's vectors for seeded probe frames match the torch tower's (shape, cosine)?"""
        size = self.model.backbone.preprocess.size
        g = torch.Generator().manual_seed(0)
        probe = torch.randn(PROBE_IMAGES, 3, size, size, generator=g)  # (P, 3, S, S)
        with torch.no_grad():
            want = self.model.backbone.clip.encode_image(probe).float()  # (P, D)
        got = self(probe)
        if want.shape != got.shape:
            return False
        return float(F.cosine_similarity(want, got, dim=-1).min()) >= 0.9999

    def __call__(self, frames: Tensor) -> Tensor:
        """(N, 3, S, S) preprocessed frames -> (N, D) float32 tower vectors."""
        x = np.ascontiguousarray(frames.detach().cpu().numpy(), dtype=np.float32)
        starts = range(0, len(x), CALL_IMAGES)
        parts = [self.session.run(None, {"frames": x[i : i + CALL_IMAGES]})[0] for i in starts]  # (<=256, D)
        return torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, self._dim())

    def _dim(self) -> int:
        return int(self.session.get_outputs()[0].shape[-1])
