"""model.onnx_graph: the graph rewrite that puts every linear weight in a MatMul keeps the values."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from model.onnx_graph import linear_weights_as_matmuls


def _graph(rng: np.random.Generator) -> onnx.ModelProto:
    """x (n, 8) -> a Gemm (transB) -> a packed projection split at run time -> y (n, 8)."""
    weights = {
        "gemm_w": rng.standard_normal((8, 8), dtype=np.float32),  # (out, in): transB=1
        "gemm_b": rng.standard_normal(8, dtype=np.float32),
        "packed": rng.standard_normal((24, 8), dtype=np.float32),  # as an attention in_proj_weight
        "sizes": np.array([8, 16], dtype=np.int64),
        "first": np.array(0, dtype=np.int64),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "gemm_w", "gemm_b"], ["h"], transB=1),
        helper.make_node("SplitToSequence", ["packed", "sizes"], ["seq"], axis=0),
        helper.make_node("SequenceAt", ["seq", "first"], ["w_q"]),  # (8, 8)
        helper.make_node("Transpose", ["w_q"], ["w_qt"], perm=[1, 0]),
        helper.make_node("MatMul", ["h", "w_qt"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_gemm_and_split_weights_become_matmul_constants() -> None:
    rng = np.random.default_rng(0)
    model = _graph(rng)
    x = rng.standard_normal((5, 8), dtype=np.float32)
    want = _run(model, x)
    out, rewritten = linear_weights_as_matmuls(_graph(np.random.default_rng(0)))
    assert rewritten == 2  # the Gemm and the split
    ops = [n.op_type for n in out.graph.node]
    assert ops == ["MatMul", "Add", "MatMul"]  # no Gemm, split, SequenceAt or Transpose left
    inits = {i.name for i in out.graph.initializer}
    assert all(n.input[1] in inits for n in out.graph.node if n.op_type == "MatMul")  # quantisable
    assert "packed" not in inits  # only the pieces that are used are kept
    np.testing.assert_allclose(_run(out, x), want, rtol=1e-5, atol=1e-5)
