"""ONNX export driven by the spec: names, dynamic batch/time axes, checker and shape inference.

fp32 uses the TorchScript-based exporter at opset 17 (fast, and every reference model is
tested to export with a dynamic time axis); fp16 converts the fp32 graph's weights and
compute to float16 with ONNX Runtime's converter, keeping float32 inputs and outputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from syncopt.core.artifact import Artifact
from syncopt.core.formats import check_precision
from syncopt.export import write_artifact

OPSET = 17


def export_onnx(model: nn.Module, out_dir: Path, precision: str = "fp32") -> Artifact:
    """Write ``<name>_<preset>_<precision>.onnx`` with its manifest and source weights."""
    import onnx

    check_precision("onnx", precision)
    spec = model.spec
    example = spec.example_inputs(T=max(16, spec.min_frames))

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (), str(tmp), kwargs=example, input_names=spec.input_names,
                              output_names=spec.output_names, dynamic_axes=spec.dynamic_axes(),
                              opset_version=OPSET, dynamo=False)
        graph = onnx.load(str(tmp))
        if precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            graph = _topologically_sorted(convert_float_to_float16(graph, keep_io_types=True))
            # The converter keeps the shape inference it ran as value_info for every tensor: optional in ONNX
            # (runtimes infer it again) and, for tiny fcn_attn, more bytes than the float16 weights.
            del graph.graph.value_info[:]
        onnx.checker.check_model(graph, full_check=True)  # full_check runs strict shape inference
        onnx.save(graph, str(tmp))

    return write_artifact(model, "onnx", out_dir, precision, write)


def _topologically_sorted(model):
    """Reorder nodes so each comes after its inputs' producers (the fp16 converter appends casts)."""
    graph = model.graph
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("ONNX graph has a cycle or an undefined input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)
    return model

