"""The formats table: one row per artifact format, read by every stage.

Export, runtimes, parity, the conversion matrix, bench, bundles, gates, recipe validation and the
CLI help all learn from :data:`FORMATS` which formats exist, which precisions each exports, which
module exports it and which session runs it (``module:attr``, imported only when used), which pip
extra installs it, whether it can run here (:meth:`Format.available`), whether its artifacts are
fixed at one clip length T, and which mobile bundle targets take it. Adding a format is its
exporter file, its runtime file and one row here (after Ultralytics' export table, which drives
its export, predict and benchmark from one list).

:func:`syncopt.export.write_artifact` is the one place an artifact is written: source weights beside it, the
file or directory written atomically, its sha256 and the manifest.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:

    pass

Stage = Literal["export", "run"]


def _macos() -> str | None:
    return None if platform.system() == "Darwin" else "CoreML prediction needs macOS"


def _cuda() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "TensorRT needs a CUDA device; none is visible"


@dataclass(frozen=True)
class Format:
    """One artifact format; see the module docstring."""

    name: str
    title: str  # as messages write it
    suffix: str  # of the artifact's file or directory name
    exporter: str  # "module:function", export(model, out_dir, precision, **options) -> Artifact
    runtime: str  # the runtime name that runs it (syncopt.runtimes.load, bench --runtimes)
    session: str  # "module:class", built as cls(artifact, threads=...)
    precisions: tuple[str, ...]  # what the exporter makes (syncopt quantize may make others)
    extra: str  # pip install 'syncopt[<extra>]'
    modules: tuple[str, ...]  # imported by exporter and runtime
    fixed_frames: bool = False  # artifacts fixed at one clip length T (the exporter takes ``frames``)
    directory: bool = False  # the artifact is a directory (sha256 over its files)
    bundle_targets: tuple[str, ...] = ()  # mobile bundle targets (syncopt bundle) that ship it
    export_device: Callable[[], str | None] | None = None  # reason the exporter cannot run here, or None
    run_device: Callable[[], str | None] | None = None  # reason the runtime cannot run here, or None
    validate: str | None = None  # "module:function" checking structure where the runtime cannot run
    quantized: tuple[str, ...] = ()  # precisions only syncopt quantize makes (not the exporter)

    def available(self, stage: Stage = "run") -> tuple[bool, str]:
        """Whether this format can be exported (``stage="export"``) or run here, and the reason it cannot."""
        for module in self.modules:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):  # a parent package missing, or the module blocked in sys.modules
                found = False
            if not found:
                return False, f"{self.title} needs the '{module}' package: {self.install}"
        check = self.export_device if stage == "export" else self.run_device
        reason = check() if check else None
        return reason is None, reason or ""

    @property
    def install(self) -> str:
        return f"pip install 'syncopt[{self.extra}]'" if self.extra else "pip install syncopt"

    def export_options(self, frames: int | None) -> dict[str, int]:
        """The exporter's keyword options for a requested clip length (only fixed-T formats take one)."""
        return {"frames": frames} if self.fixed_frames and frames else {}

    def load(self, attr: Literal["exporter", "session", "validate"]):
        """The exporter, session class or validator of this row, imported now."""
        module, name = getattr(self, attr).split(":")
        return getattr(importlib.import_module(module), name)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", "ONNX", ".onnx", "syncopt.export.onnx:export_onnx", "onnxruntime",
           "syncopt.runtimes.onnxruntime_runtime:OrtSession", ("fp32", "fp16"), "", ("onnx", "onnxruntime"),
           quantized=("int8",)),
    Format("tflite", "TFLite", ".tflite", "syncopt.export.tflite:export_tflite", "tflite",
           "syncopt.runtimes.tflite_runtime:TFLiteSession", ("fp32", "fp16", "int8"), "tflite",
           ("onnx2tf", "tensorflow", "ai_edge_litert"), fixed_frames=True, bundle_targets=("android",)),
    Format("coreml", "CoreML", ".mlpackage", "syncopt.export.coreml:export_coreml", "coreml",
           "syncopt.runtimes.coreml_runtime:CoreMLSession", ("fp32", "fp16", "int8"), "coreml", ("coremltools",),
           directory=True, bundle_targets=("ios",), run_device=_macos,
           validate="syncopt.export.coreml:validate_package"),
    Format("tensorrt", "TensorRT", ".engine", "syncopt.export.tensorrt:export_tensorrt", "tensorrt",
           "syncopt.runtimes.tensorrt_runtime:TensorRTSession", ("fp32", "fp16", "int8"), "tensorrt", ("tensorrt",),
           export_device=_cuda, run_device=_cuda),
    Format("openvino", "OpenVINO", ".openvino", "syncopt.export.openvino:export_openvino", "openvino",
           "syncopt.runtimes.openvino_runtime:OpenVINOSession", ("fp32", "bf16", "int8"), "openvino",
           ("openvino",), directory=True),
)}
# Runtimes that run something other than an exported file: torch runs any artifact's source model.
EXTRA_RUNTIMES = {"torch": "syncopt.runtimes.torch_runtime:TorchSession"}


def get_format(name: str) -> Format:
    """The row of format ``name``, or a one-line :class:`UsageError` naming the known ones."""
    from syncopt.core.errors import UsageError

    if name not in FORMATS:
        raise UsageError(f"unknown format '{name}' (known: {', '.join(FORMATS)})")
    return FORMATS[name]


def runtime_formats() -> dict[str, str]:
    """Runtime name -> the format it runs (torch: 'torch', the source model)."""
    return {"torch": "torch"} | {f.runtime: f.name for f in FORMATS.values()}


def bundle_targets() -> dict[str, str]:
    """Mobile bundle target -> the format it ships."""
    return {t: f.name for f in FORMATS.values() for t in f.bundle_targets}


def check_precision(fmt: str, precision: str) -> None:
    """A one-line :class:`UsageError` when format ``fmt`` does not export ``precision``."""
    from syncopt.core.errors import UsageError

    row = FORMATS[fmt]
    if precision not in row.precisions:
        raise UsageError(f"{row.title} export supports {', '.join(row.precisions)}, not '{precision}'"
                         + (f" (INT8 {row.title} comes from syncopt quantize)" if precision in row.quantized else ""))


def artifact_bytes(path: str | os.PathLike) -> int:
    """Size of an artifact file, or of every file in an artifact directory."""
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
