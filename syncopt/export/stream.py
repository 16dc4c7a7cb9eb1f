"""One streaming step of a causal model as an artifact (for ``syncopt stream`` on a device runtime)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from syncopt.core.artifact import Artifact
from syncopt.core.errors import UsageError


def export_stream(model: torch.nn.Module, fmt: str, out_dir: str | os.PathLike, chunk_frames: int = 5,
                  precision: str = "fp32") -> Artifact:
    """Export one streaming step of ``chunk_frames`` frames (state as explicit inputs ``<name>`` and
    outputs ``<name>_out``) with :func:`syncopt.export.export`; returns the Artifact.

    TFLite (fp32, fp16): state inputs stay channel-first (NCT, as in the spec); the other tensors
    and some state outputs come out channels-last, each layout recorded in ``Artifact.native``
    (the TFLite runtime transposes)."""
    from syncopt.export import export
    from syncopt.models.causal import StreamStep

    if not hasattr(model, "step"):
        raise UsageError(f"model '{model.spec.name}' is not causal; export a streaming step of fcn_causal")
    if chunk_frames < 1:
        raise UsageError(f"chunk must be at least one frame, got {chunk_frames}")
    step = StreamStep(model.eval(), chunk_frames)
    options = {}
    if fmt == "tflite":
        if precision == "int8":
            raise UsageError("a TFLite streaming step exports in fp32 or fp16 (INT8 calibration needs whole clips)")
        square = [t.name for t in (*step.spec.inputs, *step.spec.outputs) if len(t.shape) == 3 and t.shape[1] == t.shape[2]]
        if square:  # channel-first and channels-last would look alike: the runtime could not tell them apart
            raise UsageError(f"a {chunk_frames}-frame TFLite step makes {', '.join(square)} square; choose another chunk length")
        options = {"frames": chunk_frames, "keep_layout": tuple(step.state_names)}
    return export(step, fmt, Path(out_dir), precision, **options)
