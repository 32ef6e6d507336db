"""Exporting a torch module to ONNX and preparing the graph ONNX Runtime serves (query and frames).

`export_raw` writes the torch export with one dynamic dimension; `prepare_graph` constant-folds it
and rewrites it so that every linear layer's weight is a MatMul constant.

Weight-only quantisers (`MatMulNBits`, `quantize_dynamic`) only touch a MatMul whose second input
is an initializer. The torch export (after ONNX Runtime's constant folding) leaves two other shapes:
`Gemm` nodes (linear layers on 2-D inputs, e.g. attention's out_proj) and packed attention
projections split at run time (`SplitToSequence` -> `SequenceAt` of `in_proj_weight`). Both are
folded here into plain `MatMul` (+ `Add` for the bias) with constant weights; values are unchanged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import Tensor, nn

from .fileio import atomic_path


def export_raw(
    module: nn.Module, example: Tensor, path: Path, input_name: str, output_name: str, dims: dict[int, object]
) -> Path:
    """The torch export of `module(example)` as it comes (`dims`: the input's dynamic dimensions,
    torch.export.Dim by axis), not yet folded or rewritten."""
    with torch.no_grad(), atomic_path(path) as out:
        torch.onnx.export(
            module.eval().cpu(),
            (example,),
            str(out),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes={input_name: dims},
            dynamo=True,
            external_data=False,
            optimize=False,  # folded by ONNX Runtime in prepare_graph; exporting is 3x faster
            verify=False,  # checked against torch when loaded (`onnx_cache.load_checked`)
            verbose=False,
        )
    return path


def _fold_constants(src: Path, dst: Path) -> None:
    """ONNX Runtime's basic optimisation (constant folding) of `src`, saved at `dst`."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])


def prepare_graph(raw: Path, path: Path) -> Path:
    """Constant-fold `raw` and turn every linear layer into a MatMul with a constant weight."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".fold-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        _fold_constants(raw, folded)
        proto, _ = linear_weights_as_matmuls(onnx.load(str(folded)))
    with atomic_path(path) as out:
        onnx.save(proto, str(out))
    return path


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def linear_weights_as_matmuls(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Fold constant splits, constant transposes and Gemms; returns (model, nodes rewritten)."""
    graph = model.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    splits: dict[str, list[np.ndarray]] = {}  # SplitToSequence output -> constant chunks
    nodes: list[onnx.NodeProto] = []
    rewritten = 0
    for node in graph.node:
        a = _attrs(node)
        ins = list(node.input)
        if node.op_type == "SplitToSequence" and ins[0] in consts and len(ins) == 2 and ins[1] in consts:
            axis = int(a.get("axis", 0))  # type: ignore[call-overload]
            cuts = np.cumsum(consts[ins[1]])[:-1]
            splits[node.output[0]] = np.split(consts[ins[0]], cuts, axis=axis)
            rewritten += 1
            continue  # dropped: every SequenceAt of it becomes a constant below
        if node.op_type == "SequenceAt" and ins[0] in splits and ins[1] in consts:
            consts[node.output[0]] = splits[ins[0]][int(consts[ins[1]])]
            continue
        if node.op_type == "Transpose" and ins[0] in consts:
            consts[node.output[0]] = np.ascontiguousarray(np.transpose(consts[ins[0]], a.get("perm")))  # type: ignore[call-overload]
            continue
        plain_gemm = a.get("transA", 0) == 0 and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0
        if node.op_type == "Gemm" and plain_gemm and ins[1] in consts:
            w = consts[ins[1]]
            name = f"{node.name}_weight"
            consts[name] = np.ascontiguousarray(w.T if a.get("transB", 0) else w)  # (in, out)
            if len(ins) > 2 and ins[2]:
                mm = f"{node.output[0]}_mm"
                nodes.append(helper.make_node("MatMul", [ins[0], name], [mm], name=f"{node.name}_MatMul"))
                nodes.append(
                    helper.make_node("Add", [mm, ins[2]], list(node.output), name=f"{node.name}_Add")
                )
            else:
                nodes.append(
                    helper.make_node("MatMul", [ins[0], name], list(node.output), name=f"{node.name}_MatMul")
                )
            rewritten += 1
            continue
        nodes.append(node)
    if any(i in splits for n in nodes for i in n.input):
        return model, 0  # a split used some other way: leave the graph as it was
    needed = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items() if k in needed)
    return model, rewritten
