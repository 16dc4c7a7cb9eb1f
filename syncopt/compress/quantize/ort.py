"""``ort``: ONNX Runtime static QDQ quantization of the fp32 ONNX export (see :mod:`syncopt.compress.quantize`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from syncopt.compress.quantize import CALIBRATION, QuantizeConfig, Quantized
from syncopt.core.artifact import Artifact, manifest_path
from syncopt.core.atomic import atomic_path, sha256_file
from syncopt.core.spec import ModelSpec
from syncopt.data.datasets import ClipDataset

# Only the weighted layers: the correlation (normalise, shifted products) and the elementwise tail
# stay float, which keeps the offset decision and avoids Q/DQ pairs around cheap ops.
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
# The Conv3d lowering's glue (frames layout, time shifts, sum of taps) is quantized too, so a lowered
# convolution reads and writes uint8: ONNX Runtime drops Q/DQ pairs around data-movement ops and fuses
# DQ -> Add -> Q into QLinearAdd (its QDQ transformers, "QDQ format" in ONNX Runtime's "Quantize ONNX
# models" page).
LOWERED_GLUE_OPS = ("Transpose", "Squeeze", "Unsqueeze", "Slice", "Pad", "Add")
DATA_MOVEMENT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Pad")


def quantize_ort(model: nn.Module, calib: ClipDataset, evaluation: ClipDataset, config: QuantizeConfig,
                 out: Path) -> Quantized:
    """The fp32 ONNX export and its static QDQ INT8 (:func:`ort_int8`)."""
    fp32, int8 = ort_int8(model, calib, config, out)
    return Quantized(int8, fp32)


def ort_int8(model: nn.Module, calib: ClipDataset, config: QuantizeConfig, out: Path,
             keep_float: set[str] = frozenset()) -> tuple[Artifact, Artifact]:
    """Export fp32 ONNX, then static QDQ quantization calibrated on ``calib``; ``keep_float``: more nodes left float."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from syncopt.export.lowering import lower_conv3d
    from syncopt.export.onnx import export_onnx

    fp32 = export_onnx(model, out, "fp32")
    spec = model.spec
    target = out / f"{spec.name}_{spec.preset}_int8.onnx"
    graph = onnx.load(str(fp32.path))
    keep_float = _float_convs(graph.graph) | set(keep_float)
    batch = 1 if config.lower_conv3d and lower_conv3d(graph) else None
    keep_float |= _conv3d_nodes(graph.graph)
    with atomic_path(target.with_suffix(".pre.onnx")) as pre, atomic_path(target) as tmp:
        onnx.save(graph, str(pre))
        quant_pre_process(str(pre), str(pre), skip_symbolic_shape=True)
        # uint8 activations x int8 weights: x86's integer dot products multiply unsigned by signed bytes
        # (VPMADDUBSW; AVX-512 VNNI VPDPBUSD), and ONNX Runtime's CPU QLinearConv takes uint8 input for every
        # convolution here (with int8 activations 12 of lowered tiny x3d_s's 63 quantized ones stayed float Convs).
        quantize_static(str(pre), str(tmp), _Reader(calib, spec), quant_format=QuantFormat.QDQ,
                        per_channel=config.per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, CALIBRATION[config.calibration]),
                        op_types_to_quantize=[*QUANTIZED_OPS, *LOWERED_GLUE_OPS],
                        nodes_to_quantize=_quantized_nodes(pre, keep_float),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    target.with_suffix(".pre.onnx").unlink(missing_ok=True)
    artifact = fp32.model_copy(update={"precision": "int8", "file": target.name, "sha256": sha256_file(target),
                                       "batch": batch})
    artifact.write(manifest_path(target))
    return fp32, artifact


def _float_convs(graph) -> set[str]:
    """Convolutions that stay float: those reading a model input, and both ends of a conv -> conv link with
    only data movement between (X3D's (2+1)D stem), whose tensor no norm or nonlinearity has tamed.

    MFCC and such links span ranges one uint8 scale per tensor resolves poorly: on the distilled tiny x3d_s
    (100 held-out clips) quantizing them left worst-frame embedding cosines of 0.896 (video, Conv3d lowered)
    and 0.984 (audio), against 0.955 and 0.994 with them float. RGB's first convolution (3 input channels)
    gains no speed in INT8: tiny mobile_2d at 250 frames ran 0.71x fp32 with it INT8 and 0.95x with it float
    (full mobile_2d: 0.91x-1.0x either way)."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def next_convs(tensor: str) -> list:
        found, frontier = [], [tensor]
        while frontier:
            for node in consumers.get(frontier.pop(), []):
                if node.op_type == "Conv":
                    found.append(node)
                elif node.op_type in DATA_MOVEMENT_OPS:
                    frontier.extend(node.output)
        return found

    keep = {n.name for i in graph.input for n in next_convs(i.name)}
    for node in graph.node:
        linked = next_convs(node.output[0]) if node.op_type == "Conv" else []
        keep |= {node.name, *(n.name for n in linked)} if linked else set()
    return keep


def _conv3d_nodes(graph) -> set[str]:
    """3D convolutions. They stay float unless lowered: ONNX Runtime's CPU QLinearConv takes rank-5 uint8
    input, but through its generic im2col path, slower than the float Conv (tiny x3d_s, 25 frames: 2.18 ms
    with every Conv3d INT8, 1.92 ms fp32)."""
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    return {n.name for n in graph.node if n.op_type == "Conv" and ranks.get(n.input[1]) == 5}


def _quantized_nodes(path: str | Path, keep_float: set[str]) -> list[str]:
    """The weighted layers and the glue of lowered 3D convolutions (not the correlation's Pad/Slice),
    less ``keep_float`` (original node names; a lowered node is named after its convolution)."""
    import onnx

    from syncopt.export.lowering import MARK, is_lowered

    return [n.name for n in onnx.load(str(path)).graph.node
            if (n.op_type in QUANTIZED_OPS or (n.op_type in LOWERED_GLUE_OPS and is_lowered(n.name)))
            and n.name.split(MARK)[0] not in keep_float]


class _Reader:
    """ONNX Runtime calibration reader: one clip per batch, as the spec's named inputs."""

    def __init__(self, dataset: ClipDataset, spec: ModelSpec) -> None:
        self.items = iter(range(len(dataset)))
        self.dataset, self.spec = dataset, spec

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self.items, None)
        if index is None:
            return None
        item = self.dataset[index]
        return {name: item[name][None].numpy() for name in self.spec.input_names}
