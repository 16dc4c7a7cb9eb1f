"""TensorRT engine from the ONNX graph with TensorRT's ONNX parser (CUDA only).

The engine keeps the dynamic batch and time axes through one optimization profile computed
from the spec (:func:`optimization_profile`): min = the spec's ``min_frames`` at batch 1,
opt = its standard length at batch 1, max = ``max_frames`` (2 minutes) at ``max_batch``.
Precisions: fp32; fp16 (``BuilderFlag.FP16``); int8 (``BuilderFlag.INT8`` with FP16 fallback,
entropy calibration on synthetic clips at the standard length). The TensorRT 10 Python API is
used (``create_network(0)`` is explicit-batch; ``execute_async_v3`` in the runtime).
An engine is specific to the GPU and TensorRT version that built it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from syncopt.core.artifact import Artifact
from syncopt.core.atomic import temp_dir
from syncopt.core.errors import BackendUnavailable, ExportError
from syncopt.core.formats import check_precision
from syncopt.core.spec import ModelSpec
from syncopt.export import require, write_artifact

MAX_FRAMES = 3000
MAX_BATCH = 8
CALIBRATION_CLIPS = 64
Shape = tuple[int, ...]


def optimization_profile(spec: ModelSpec, max_frames: int = MAX_FRAMES,
                         max_batch: int = MAX_BATCH) -> dict[str, tuple[Shape, Shape, Shape]]:
    """Input name -> (min, opt, max) shapes for TensorRT's optimization profile."""
    spec.check_length(max_frames)
    corners = (spec.sizes(spec.min_frames, 1), spec.sizes(spec.standard_frames, 1), spec.sizes(max_frames, max_batch))
    return {t.name: tuple(t.concrete_shape(s) for s in corners) for t in spec.inputs}


def require_tensorrt(what: str):
    """The ``tensorrt`` module, once a CUDA device is known to be present (else a one-line error)."""
    trt = require("tensorrt", "tensorrt", f"{what} (CUDA only)")
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"{what} needs a CUDA device; none is visible to PyTorch")
    return trt


def export_tensorrt(model: nn.Module, out_dir: Path, precision: str = "fp32", max_frames: int = MAX_FRAMES,
                    max_batch: int = MAX_BATCH, calibration_clips: int = CALIBRATION_CLIPS) -> Artifact:
    """Write ``<name>_<preset>_<precision>.engine`` with its manifest and source weights."""
    check_precision("tensorrt", precision)
    trt = require_tensorrt("TensorRT export")
    from syncopt.export.onnx import export_onnx

    spec: ModelSpec = model.spec
    profile_shapes = optimization_profile(spec, max_frames, max_batch)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with temp_dir("trt") as tmp:
        onnx_file = export_onnx(model, Path(tmp), "fp32").path
        if not parser.parse(onnx_file.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT's ONNX parser rejects {spec.name}: {' '.join(errors.split())[:300]}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, spec, calibration_clips)
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT could not build an engine for {spec.name} {precision} (see its log above)")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            shutil.copyfileobj(memoryview(plan), f)

    return write_artifact(model, "tensorrt", out_dir, precision, write)


def _calibrator(trt, spec: ModelSpec, count: int):
    """An entropy calibrator feeding synthetic clips (batch 1, standard length) from CUDA memory."""
    from syncopt.data.datasets import synth_dataset

    data = synth_dataset(spec, "train", count, num_frames=spec.standard_frames)

    class ClipCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index, self.current = 0, {}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(data):
                return None
            item = data[self.index]
            self.index += 1
            self.current = {n: item[n].unsqueeze(0).contiguous().cuda() for n in names}  # kept alive until next
            return [self.current[n].data_ptr() for n in names]

        def read_calibration_cache(self) -> None:
            return None

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return ClipCalibrator()

