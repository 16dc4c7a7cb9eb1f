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

from syncopt.artifact import Artifact, manifest_path
from syncopt.atomic import atomic_path, sha256_file
from syncopt.errors import UsageError
from syncopt.weights import save_state_dict

OPSET = 17
PRECISIONS = ("fp32", "fp16")


def export_onnx(model: nn.Module, out_dir: Path, precision: str = "fp32") -> Artifact:
    """Write ``<name>_<preset>_<precision>.onnx`` with its manifest and source weights."""
    import onnx

    if precision not in PRECISIONS:
        raise UsageError(f"ONNX export supports {', '.join(PRECISIONS)}; INT8 ONNX comes from syncopt quantize")
    spec = model.spec
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = save_state_dict(model, out_dir / f"{spec.name}_{spec.preset}.safetensors")
    target = out_dir / f"{spec.name}_{spec.preset}_{precision}.onnx"
    example = spec.example_inputs(T=max(16, spec.min_frames))
    with atomic_path(target) as tmp:
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
    artifact = Artifact(format="onnx", precision=precision, file=target.name, sha256=sha256_file(target), spec=spec,
                        source_model=spec.name, source_preset=spec.preset, source_weights=weights.name,
                        syncopt_version=_version())
    artifact.write(manifest_path(target))
    return artifact


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


def _version() -> str:
    from syncopt import __version__

    return __version__
