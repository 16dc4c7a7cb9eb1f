"""3D convolutions of a batch-1 ONNX graph rewritten as exactly equivalent 2D ones on frames.

ONNX Runtime's CPU provider runs rank-5 convolutions through its generic im2col + GEMM path
(fp32 and INT8 alike: no NCHWc blocking, no depthwise kernel), while 2D convolutions get the
blocked NCHWc fp32 kernels (the level-3 ``NchwcTransformer``) and the depthwise / indirect-GEMM
INT8 ``QLinearConv`` kernels that the QDQ quantizer's DQ -> Conv -> Q groups fuse into
(onnxruntime.ai/docs/performance/model-optimizations/graph-optimizations.html).

:func:`lower_conv3d` rewrites every rank-5 ``Conv`` (after the exporter folded BatchNorm into it)
as: Squeeze the batch of 1 and Transpose ``(1, C, T, H, W)`` to frames ``(T, C, H, W)``; for each
temporal tap k, a Conv2d with the kernel's k-th slice on the frames shifted by k (a zero Pad and a
Slice along the frame axis); the taps summed; Transpose and Unsqueeze back. Only data movement
surrounds the 2D convolutions, so ONNX Runtime's transpose optimizer cancels the Transpose pairs
between consecutive convolutions through the elementwise ops, reductions, Squeeze and Unsqueeze
that separate them, and a whole X3D tower runs in the frames layout. The graph's batch is fixed
at 1: folding a dynamic batch into the frames needs a Reshape, which that optimizer cannot move a
Transpose through (measured on tiny x3d_s INT8: 131 Transposes left that way, 19 this way; full
x3d_s INT8 at 250 frames 1.6x faster). Time stays dynamic.
"""

from __future__ import annotations

import numpy as np

MARK = "/lowered3d/"


def is_lowered(node_name: str) -> bool:
    """Whether a node belongs to a lowered 3D convolution."""
    return MARK in node_name


def lower_conv3d(model) -> bool:
    """Lower every rank-5 ``Conv`` of ``model`` (an ``onnx.ModelProto``, in place) to 2D convolutions on
    frames, fixing the graph's batch at 1; returns whether there was any."""
    from onnx import numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    if all(_weight_3d(n, weights) is None for n in graph.node):
        return False
    for value in [*graph.input, *graph.output]:  # batch 1: Squeeze/Unsqueeze instead of a Reshape
        dims = value.type.tensor_type.shape.dim
        dims[0].Clear()
        dims[0].dim_value = 1
    nodes, lowered = [], set()
    for node in graph.node:
        w = _weight_3d(node, weights)
        if w is None:
            nodes.append(node)
            continue
        build = _Builder(graph, node.name or node.output[0])
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        _lower(build, node, numpy_helper.to_array(w), bias)
        nodes.extend(build.nodes)
        lowered.add(w.name)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name not in lowered]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return True


def _weight_3d(node, weights: dict):
    """The rank-5 weight initializer of a 3D ``Conv`` node, else None."""
    w = weights.get(node.input[1]) if node.op_type == "Conv" else None
    return w if w is not None and len(w.dims) == 5 else None


class _Builder:
    """Appends nodes and constants named after one lowered convolution."""

    def __init__(self, graph, prefix: str) -> None:
        self.graph, self.prefix, self.nodes, self.count = graph, prefix, [], 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"{self.prefix}{MARK}{what}_{self.count}"

    def const(self, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name("const")
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, np.int64))

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        from onnx import helper

        output = output or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=self.name(op), **attrs))
        return output


def _lower(build: _Builder, node, weight: np.ndarray, bias: str | None) -> None:
    """``(1, C, T, H, W)`` -> frames ``(T, C, H, W)`` -> sum over taps k of Conv2d(frames[k*dt::st]) -> back."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"{node.name}: auto_pad convolutions are not lowered")
    kt = weight.shape[2]
    st, sh, sw = attrs.get("strides", (1, 1, 1))
    dt, dh, dw = attrs.get("dilations", (1, 1, 1))
    pt0, ph0, pw0, pt1, ph1, pw1 = attrs.get("pads", (0,) * 6)
    frames = build.node("Transpose", [build.node("Squeeze", [node.input[0], build.ints(0)])], perm=[1, 0, 2, 3])
    if pt0 or pt1:
        frames = build.node("Pad", [frames, build.ints(pt0, 0, 0, 0, pt1, 0, 0, 0)])
    total = None
    for k in range(kt):
        left = (kt - 1 - k) * dt  # frames after the last one this tap reads
        window = frames if (kt, st) == (1, 1) else build.node(
            "Slice", [frames, build.ints(k * dt), build.ints(-left if left else np.iinfo(np.int64).max),
                      build.ints(0), build.ints(st)])
        inputs = [window, build.const(weight[:, :, k])] + ([bias] if bias and k == 0 else [])
        out = build.node("Conv", inputs, kernel_shape=list(weight.shape[3:]), strides=[sh, sw],
                         pads=[ph0, pw0, ph1, pw1], dilations=[dh, dw], group=attrs.get("group", 1))
        total = out if total is None else build.node("Add", [total, out])
    back = build.node("Transpose", [total], perm=[1, 0, 2, 3])
    build.node("Unsqueeze", [back, build.ints(0)], node.output[0])
