"""``tflite``: full-integer INT8 through the TFLite exporter (see :mod:`syncopt.compress.quantize`)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from syncopt.compress.quantize import QuantizeConfig, Quantized
from syncopt.core.errors import UsageError
from syncopt.data.datasets import ClipDataset


def quantize_tflite(model: nn.Module, calib: ClipDataset, evaluation: ClipDataset, config: QuantizeConfig,
                    out: Path) -> Quantized:
    """``calib`` unused: the exporter calibrates on its own representative set of synthetic clips."""
    if config.calibration_data != "synth":
        raise UsageError("TFLite INT8 calibrates on the synthetic train split only (the exporter's representative set)")
    from syncopt.export import export

    return Quantized(export(model, "tflite", out, "int8", frames=config.frames,
                            calibration_clips=config.calibration_clips))
