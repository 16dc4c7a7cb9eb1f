"""INT8 OpenVINO IR with NNCF (``syncopt quantize --method openvino``).

Post-training quantization with ``nncf.quantize`` (NNCF, "Post-training Quantization",
docs.openvino.ai/2026/openvino-workflow/model-optimization-guide/quantizing-models-post-training.html):
int8 weights per channel, activations calibrated on clips, ``MIXED`` preset (symmetric weights,
asymmetric activations: the MFCC input and the correlation are not ReLU outputs). As in the ``ort``
method, convolutions reading a model input stay float (:func:`float_scope`). With a maximum
accuracy drop, ``nncf.quantize_with_accuracy_control`` instead returns layers to float, most
harmful first, until the clip-offset accuracy on held-out validation clips is within that many
points of the float model's.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from syncopt.artifact import Artifact
from syncopt.data.datasets import ClipDataset, synth_dataset
from syncopt.errors import UsageError
from syncopt.export import require
from syncopt.spec import ModelSpec

CONVOLUTIONS = ("Convolution", "GroupConvolution")
DATA_MOVEMENT_TYPES = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice", "StridedSlice", "Pad", "Convert",
                       "Concat", "Split", "VariadicSplit")


def openvino_int8(model: nn.Module, calib: ClipDataset, config, out: Path) -> tuple[Artifact, Artifact]:
    """The fp32 IR (the speed and accuracy reference) and the NNCF INT8 IR calibrated on ``calib``.

    ``config``: a :class:`~syncopt.compress.quantize.QuantizeConfig`; its ``max_drop`` (points), when
    set, turns on accuracy control on ``eval_clips // 2`` synthetic ``val`` clips (never the test clips).
    """
    from syncopt.export import export

    fp32 = export(model, "openvino", out, "fp32")
    validation = None
    if config.max_drop is not None:
        validation = synth_dataset(model.spec, "val", max(config.eval_clips // 2, 8), config.frames)
    int8 = export(model, "openvino", out, "int8", calibration=calib, validation=validation, max_drop=config.max_drop)
    return fp32, int8


def nncf_int8(graph, spec: ModelSpec, calibration: ClipDataset, validation: ClipDataset | None = None,
              max_drop: float | None = None):
    """``graph`` (an ``openvino.Model``) quantized by NNCF on ``calibration``; see the module docstring."""
    nncf = require("nncf", "openvino", "OpenVINO INT8 (NNCF)")
    nncf.set_log_level(logging.WARNING)  # NNCF logs every operator it leaves unquantized at INFO
    if len(calibration) == 0:
        raise UsageError("empty calibration set: no clips to calibrate on")

    def feeds(item: dict) -> dict[str, np.ndarray]:
        return {name: item[name][None].numpy() for name in spec.input_names}

    data = nncf.Dataset([calibration[i] for i in range(len(calibration))], feeds)
    options = dict(subset_size=len(calibration), preset=nncf.QuantizationPreset.MIXED,
                   ignored_scope=float_scope(nncf, graph))
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars on stdout
        if max_drop is None:
            return nncf.quantize(graph, data, **options)
        return _accuracy_controlled(nncf, graph, spec, data, feeds, validation, max_drop, options)


def float_scope(nncf, graph):
    """NNCF's ignored scope: the convolutions that read a model input through data movement only.

    Measured on trained tiny fcn (8 synthetic clips, worst frame cosine of video/audio embeddings): NNCF's
    defaults 0.976/0.990; only convolutions and matrix products quantized, input convolutions float
    0.985/0.993 — but ignoring every other operator type left tiny x3d_s's INT8 IR uncompilable (the CPU
    plugin moved a dequantization onto its rank-3 projection convolution's input and failed shape
    inference), so other operator types keep NNCF's defaults (trained tiny fcn's parity inputs: worst
    video-embedding cosine 0.958 with no scope, 0.966 with this one; the INT8 row wants 0.99)."""
    names = []
    for op in graph.get_ops():
        if op.get_type_name() not in CONVOLUTIONS:
            continue
        frontier = [op.input_value(0).get_node()]
        while frontier:
            node = frontier.pop()
            if node.get_type_name() == "Parameter":
                names.append(op.get_friendly_name())
                break
            if node.get_type_name() in DATA_MOVEMENT_TYPES:
                frontier += [node.input_value(i).get_node() for i in range(node.get_input_size())]
    return nncf.IgnoredScope(names=names, validate=False)


def _accuracy_controlled(nncf, graph, spec: ModelSpec, data, feeds, validation: ClipDataset | None,
                         max_drop: float, options: dict):
    if validation is None or "offset_logits" not in spec.output_names:
        raise UsageError(f"accuracy-controlled INT8 needs validation clips and a model with offset_logits "
                         f"({spec.name} has {', '.join(spec.output_names)})")
    items = [validation[i] | {"offset": validation.items[i]["offset"]} for i in range(len(validation))]

    def accuracy(compiled, clips) -> float:
        from syncopt.decode import decode_dense

        port = compiled.output("offset_logits")
        hits = [decode_dense(torch.from_numpy(np.array(compiled(feeds(clip))[port][0]))).offset == clip["offset"]
                for clip in clips]
        return float(np.mean(hits))

    return nncf.quantize_with_accuracy_control(graph, data, nncf.Dataset(items), validation_fn=accuracy,
                                               max_drop=max_drop / 100, drop_type=nncf.DropType.ABSOLUTE,
                                               **options)
