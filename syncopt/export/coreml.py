"""CoreML ML Program (.mlpackage) export with coremltools, driven by the spec.

The model is traced with ``torch.jit.trace`` and converted with names from the spec. The time
axis is flexible: each input dimension of the form ``k*T+c`` becomes a ``ct.RangeDim`` from the
spec's ``min_frames`` to ``max_frames`` (default the standard length); the batch is fixed at 1
(the runtime runs batch items one by one). CoreML cannot tie the audio length to ``4*T``, so
both ranges are independent and the caller keeps them consistent (the spec checks it).

Precisions: fp32 (float32 compute), fp16 (float16 compute, float32 IO), int8 (weights
linearly quantized to int8 per channel with ``coremltools.optimize``, float16 compute).

The package is a directory: it is written to a temporary directory and renamed into place, and
its sha256 covers every file in it. On Linux the package cannot run (prediction is macOS-only):
:func:`validate_package` checks its structure instead.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from syncopt.core.artifact import Artifact
from syncopt.core.errors import ExportError
from syncopt.core.formats import check_precision
from syncopt.core.spec import ModelSpec, TensorSpec, parse_dim
from syncopt.export import require, write_artifact

MAX_FRAMES = 3000  # 2 minutes at 25 fps
_QUANTIZED_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


class _Positional(nn.Module):
    """Named dict-in/dict-out model as positional tensors in the spec's order (what tracing needs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs, self.outputs = model.spec.input_names, model.spec.output_names

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.inputs, tensors)))
        return tuple(out[name] for name in self.outputs)


def export_coreml(model: nn.Module, out_dir: Path, precision: str = "fp32", max_frames: int = MAX_FRAMES) -> Artifact:
    """Write ``<name>_<preset>_<precision>.mlpackage`` with its manifest and source weights."""
    check_precision("coreml", precision)
    ct = require("coremltools", "coreml", "CoreML export")
    spec: ModelSpec = model.spec
    example = spec.example_inputs(T=spec.standard_frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_Positional(model).eval(), tuple(example[n] for n in spec.input_names))
        try:
            mlmodel = ct.convert(
                traced, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                inputs=[ct.TensorType(name=t.name, shape=ct.Shape(_flexible_shape(ct, t, spec, max_frames)),
                                      dtype=np.float32) for t in spec.inputs],
                outputs=[ct.TensorType(name=n) for n in spec.output_names],
                compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16)
        except Exception as exc:  # coremltools raises many types for unsupported ops
            raise ExportError(f"coremltools cannot convert {spec.name}: {str(exc).splitlines()[0][:300]}") from exc
        if precision == "int8":
            from coremltools.optimize import coreml as cto

            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0))
            mlmodel = cto.linear_quantize_weights(mlmodel, config)
    native = tuple(t.model_copy(update={"shape": (1, *t.shape[1:])}) for t in (*spec.inputs, *spec.outputs))
    return write_artifact(model, "coreml", out_dir, precision, lambda tmp: mlmodel.save(str(tmp)), native=native,
                          batch=1, ops=program_ops(mlmodel.get_spec()))


def _flexible_shape(ct, t: TensorSpec, spec: ModelSpec, max_frames: int) -> tuple:
    """A CoreML input shape: batch 1, each ``k*T+c`` dimension a RangeDim over min..max frames."""
    dims: list = []
    for i, d in enumerate(t.shape):
        if isinstance(d, int):
            dims.append(d)
        elif i == 0:
            dims.append(1)
        else:
            k, name, c = parse_dim(d)
            if name != "T":
                raise ExportError(f"{spec.name}: CoreML export knows the time axis only, not '{d}'")
            dims.append(ct.RangeDim(lower_bound=k * spec.min_frames + c, upper_bound=k * max_frames + c,
                                    default=k * spec.standard_frames + c))  # named symbols outlive a failed convert
    return tuple(dims)


def program_ops(model_spec) -> list[str]:
    """Op types of an ML Program's main function (all specialisations)."""
    ops: set[str] = set()
    for block in model_spec.mlProgram.functions["main"].block_specializations.values():
        stack = list(block.operations)
        while stack:
            op = stack.pop()
            ops.add(op.type)
            for inner in op.blocks:
                stack.extend(inner.operations)
    return sorted(ops)


def validate_package(artifact: Artifact) -> list[str]:
    """Problems with a saved .mlpackage (empty list: it is sound).

    It reloads (without compiling off macOS); its inputs and outputs have the spec's names, its
    input shapes are the spec's at the standard length with a time range covering min_frames;
    its ops are known to the MIL op registry; its weights/compute have the manifest's precision.
    """
    ct = require("coremltools", "coreml", "CoreML validation")
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    spec = artifact.spec
    mlmodel = ct.models.MLModel(str(artifact.path), skip_model_load=not _is_macos())
    desc = mlmodel.get_spec().description
    problems = []
    if [i.name for i in desc.input] != spec.input_names:
        problems.append(f"inputs {[i.name for i in desc.input]} != spec {spec.input_names}")
    if [o.name for o in desc.output] != spec.output_names:
        problems.append(f"outputs {[o.name for o in desc.output]} != spec {spec.output_names}")
    for feature, t in zip(desc.input, spec.inputs):
        array = feature.type.multiArrayType
        want = t.concrete_shape(spec.sizes(spec.standard_frames, batch=1))
        if tuple(array.shape) != want:
            problems.append(f"input {t.name}: default shape {tuple(array.shape)} != {want}")
        if array.dataType != ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32:
            problems.append(f"input {t.name}: not float32")
        lowest = t.concrete_shape(spec.sizes(spec.min_frames, batch=1))
        ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
        if len(ranges) != len(want) or any(not lo <= need for (lo, _), need in zip(ranges, lowest)):
            problems.append(f"input {t.name}: shape ranges {ranges} do not reach the minimum {lowest}")
    ops = program_ops(mlmodel.get_spec())
    unknown = [op for op in ops if op not in SSAOpRegistry.core_ops]
    if unknown:
        problems.append(f"ops unknown to CoreML: {', '.join(unknown)}")
    problems += _precision_problems(artifact.precision, ops, mlmodel.get_spec())
    return problems


def _precision_problems(precision: str, ops: list[str], model_spec) -> list[str]:
    fp16 = _uses_fp16(model_spec)
    quantized = any(op in _QUANTIZED_WEIGHT_OPS for op in ops)
    expect = {"fp32": (False, False), "fp16": (True, False), "int8": (True, True)}[precision]
    if (fp16, quantized) != expect:
        return [f"precision: float16 compute {fp16}, int8 weights {quantized}; {precision} expects "
                f"{expect[0]}, {expect[1]}"]
    return []


def _uses_fp16(model_spec) -> bool:
    from coremltools.proto import MIL_pb2

    for block in model_spec.mlProgram.functions["main"].block_specializations.values():
        for op in block.operations:
            for out in op.outputs:
                if out.type.tensorType.dataType == MIL_pb2.DataType.FLOAT16:
                    return True
    return False


def _is_macos() -> bool:
    return os.uname().sysname == "Darwin"

