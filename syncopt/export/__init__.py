"""Exporters, one module per format, registered in :data:`syncopt.formats.FORMATS`; back-ends are imported lazily."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from torch import nn

from syncopt.artifact import Artifact
from syncopt.errors import BackendUnavailable
from syncopt.formats import get_format


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailable` naming the extra that installs it.

    Native start-up logging (TensorFlow's CUDA-plugin and absl lines) is kept off the terminal,
    so an error after it is still the only line on stderr.
    """
    from syncopt.log import native_stderr_silenced

    try:
        with native_stderr_silenced():
            return importlib.import_module(module)
    except ImportError as exc:  # includes a module blocked by sys.modules[name] = None
        raise BackendUnavailable(f"{what} needs the '{module}' package: pip install 'syncopt[{extra}]' "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc


def export(model: nn.Module, fmt: str, out_dir: str | os.PathLike, precision: str = "fp32", **options) -> Artifact:
    """Export ``model`` (which carries its spec) to ``fmt``; ``options`` go to that format's exporter."""
    return get_format(fmt).load("exporter")(model, Path(out_dir), precision, **options)
