"""syncopt: audio-visual lip-sync models, compression, export, parity and benchmarks.

``syncopt.create`` and ``syncopt.model_names`` (:mod:`syncopt.models.registry`) import torch when first
used, and ``__version__`` reads the package metadata then, so that ``import syncopt`` (and the command
line's start-up) stays light.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any

__all__ = ["__version__", "create", "model_names"]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read on first use: the package metadata costs ~30 ms of start-up
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("syncopt")
        except PackageNotFoundError:  # running from a source tree without installation
            return "0.0.0+unknown"
    if name in ("create", "model_names"):
        from syncopt.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'syncopt' has no attribute {name!r}")


# Modules that moved when the package took its layered layout (docs/DESIGN.md): the old dotted names
# still import, with a DeprecationWarning, for a deprecation period (to be removed in 0.3).
MOVED = {
    **{f"syncopt.{m}": f"syncopt.core.{m}" for m in ("errors", "atomic", "log", "bounds", "yamlfile", "spec",
                                                       "artifact", "formats", "plots")},
    **{f"syncopt.{m}": f"syncopt.models.{m}" for m in ("registry", "weights", "complexity", "catalog", "decode")},
    **{f"syncopt.{m}": f"syncopt.training.{m}" for m in ("train", "losses", "evaluate", "finetune",
                                                           "mixed_precision", "distributed")},
    **{f"syncopt.{m}": f"syncopt.inference.{m}" for m in ("sync", "infer", "speakers", "inconsistency", "streaming",
                                                            "render", "calibration")},
    **{f"syncopt.{m}": f"syncopt.analysis.{m}" for m in ("shift_eval", "robustness", "explain")},
    **{f"syncopt.{m}": f"syncopt.deploy.{m}" for m in ("bench", "bundle", "gate")},
    "syncopt.preprocess": "syncopt.data.preprocess",
    "syncopt.locate": "syncopt.parity.locate",
    "syncopt.recipe": "syncopt.pipeline.recipe",
    "syncopt.recipe_run": "syncopt.pipeline.runner",
    "syncopt.recipe_stages": "syncopt.pipeline.stages",
    "syncopt.reference_models": "syncopt.models",
    "syncopt.export.matrix": "syncopt.deploy.matrix",
    "syncopt.compress.architecture": "syncopt.models.architecture",
    "syncopt.compress.qat": "syncopt.compress.quantize.qat",
    "syncopt.compress.quantize_openvino": "syncopt.export.openvino_int8",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name (or a submodule under an old package name) as its new module."""

    def __init__(self) -> None:
        self.specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith("syncopt."):
            return None
        old = next((o for o in MOVED if name == o or name.startswith(o + ".")), None)
        return None if old is None else importlib.util.spec_from_loader(name, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        old = next(o for o in MOVED if spec.name == o or spec.name.startswith(o + "."))
        new = MOVED[old] + spec.name[len(old):]
        warnings.warn(f"{spec.name} moved to {new}; the old name goes in syncopt 0.3", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self.specs[new] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        """The module is the new one, already executed: it keeps its own spec (the import set the alias's)."""
        module.__spec__ = self.specs[module.__name__]


sys.meta_path.insert(0, _MovedModules())  # ahead of the path finder, which would load a moved file twice
