"""Exporters, one module per format, registered by name; back-ends are imported lazily."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from torch import nn

from syncopt.artifact import Artifact
from syncopt.errors import UsageError

# format -> "module:function"; each function is export(model, out_dir, precision) -> Artifact
EXPORTERS = {
    "onnx": "syncopt.export.onnx:export_onnx",
}


def export(model: nn.Module, fmt: str, out_dir: str | os.PathLike, precision: str = "fp32") -> Artifact:
    """Export ``model`` (which carries its spec and ``source`` name/preset) to ``fmt``."""
    if fmt not in EXPORTERS:
        raise UsageError(f"unknown format '{fmt}' (known: {', '.join(EXPORTERS)})")
    module, func = EXPORTERS[fmt].split(":")
    return getattr(importlib.import_module(module), func)(model, Path(out_dir), precision)
