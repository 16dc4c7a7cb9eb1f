"""syncopt: audio-visual lip-sync models, compression, export, parity and benchmarks."""

from importlib.metadata import PackageNotFoundError, version

from syncopt.models.registry import create, model_names

try:
    __version__ = version("syncopt")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "create", "model_names"]
