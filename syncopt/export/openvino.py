"""OpenVINO IR export: ``<name>_<preset>_<precision>.openvino/`` holding ``model.xml`` and ``model.bin``.

The IR is converted with ``openvino.convert_model`` from the spec-driven fp32 ONNX export, so it
keeps that graph's names and its dynamic batch and time axes (the ONNX ``dim_param`` axes become
dynamic dimensions): one artifact serves any T at or above the spec's ``min_frames``. The two IR
files are written into one directory that is renamed into place, so a reader sees both or neither
(the layout of Ultralytics' ``*_openvino_model/`` folders); the manifest's sha256 covers both.

Precisions (what the runtime does with each, see :mod:`syncopt.runtimes.openvino_runtime`):

- fp32: float32 weights, inferred with ``INFERENCE_PRECISION_HINT=f32`` (the CPU plugin's own
  default on CPUs with AVX-512 BF16 or AMX is bf16, so the hint is always set);
- bf16: float16-stored weights (``compress_to_fp16``, half the bytes), inferred in bfloat16;
- int8: NNCF post-training quantization (``nncf.quantize``) calibrated on synthetic clips, or on the
  clips :mod:`syncopt.compress.quantize.openvino` passes (``syncopt quantize --method openvino``),
  float parts inferred in f32; layers return to float until the worst embedding cosine to the float
  IR on check clips reaches ``min_cosine`` (the INT8 row's 0.99).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from syncopt.core.artifact import Artifact
from syncopt.core.errors import ExportError
from syncopt.core.formats import check_precision
from syncopt.export import require, write_artifact

XML, BIN = "model.xml", "model.bin"
CALIBRATION_CLIPS = 64  # as the TFLite and TensorRT INT8 exporters


def export_openvino(model: nn.Module, out_dir: Path, precision: str = "fp32", calibration=None,
                    calibration_clips: int = CALIBRATION_CLIPS, validation=None, max_drop: float | None = None,
                    min_cosine: float | None = None, frames: int | None = None) -> Artifact:
    """Write the IR directory with its manifest and source weights.

    int8 options: ``calibration`` (a :class:`~syncopt.data.datasets.ClipDataset`; default the first
    ``calibration_clips`` synthetic ``train`` clips of ``frames`` frames, default the spec's standard
    length); with ``max_drop`` (accuracy points) and ``validation`` clips, NNCF's accuracy-controlled
    quantization keeps layers float until the clip-offset accuracy drop is within it; otherwise layers
    return to float until the worst embedding cosine on ``validation`` clips (default synthetic ``val``
    clips) and two random inputs reaches ``min_cosine`` (default the INT8 row's 0.99).
    """
    check_precision("openvino", precision)
    ov = require("openvino", "openvino", "OpenVINO export")
    from syncopt.export.onnx import export_onnx

    spec = model.spec
    with tempfile.TemporaryDirectory(prefix="syncopt-openvino-") as tmp:
        source = export_onnx(model, Path(tmp), "fp32").path
        try:
            graph = ov.convert_model(str(source))
        except Exception as exc:  # the frontend raises several types for unsupported operators
            raise ExportError(f"OpenVINO cannot convert {spec.name}: {' '.join(str(exc).split())[:300]}") from exc
    if precision == "int8":
        from syncopt.data.datasets import synth_dataset
        from syncopt.export.openvino_int8 import CHECK_CLIPS, MIN_COSINE, nncf_int8

        length = frames or spec.standard_frames
        if calibration is None:
            calibration = synth_dataset(spec, "train", calibration_clips, num_frames=length)
        if validation is None:
            validation = synth_dataset(spec, "val", CHECK_CLIPS, num_frames=length)
        graph = nncf_int8(graph, spec, calibration, validation=validation, max_drop=max_drop,
                          min_cosine=MIN_COSINE if min_cosine is None else min_cosine)

    def write(folder: Path) -> dict:
        ov.save_model(graph, str(folder / XML), compress_to_fp16=precision == "bf16")
        return {"ops": sorted({op.get_type_name() for op in graph.get_ops()})}

    return write_artifact(model, "openvino", out_dir, precision, write)
