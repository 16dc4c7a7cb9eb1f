"""The shipped MediaPipe face models (``syncopt/assets/mediapipe/``, see NOTICE there) run with
ai-edge-litert's TFLite interpreter, imported lazily: a missing runtime is a one-line error."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np

from syncopt.core.errors import BackendUnavailable, InputFileError
from syncopt.core.log import native_stderr_silenced

ASSET_DIR = "assets/mediapipe"


def runtime_available() -> bool:
    """Whether ai-edge-litert (the TFLite interpreter) can be imported."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def asset_path(name: str) -> Path:
    """A shipped model file, e.g. ``face_landmark.tflite``."""
    path = Path(str(resources.files("syncopt") / ASSET_DIR / name))
    if not path.is_file():
        raise InputFileError(f"the shipped model {ASSET_DIR}/{name} is missing from this syncopt install")
    return path


class TFLiteModel:
    """One float32 input, named float32 outputs; ``__call__`` copies nothing but the outputs."""

    def __init__(self, name: str, num_threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailable("the face landmark models need ai-edge-litert: pip install 'syncopt[tflite]' "
                                     "(or ai-edge-litert)") from exc
        self.name = name
        with native_stderr_silenced():  # LiteRT's C++ logger announces the XNNPACK delegate on fd 2
            self._interp = Interpreter(model_path=str(asset_path(name)), num_threads=num_threads)
            self._interp.allocate_tensors()
        (inp,) = self._interp.get_input_details()
        self.input_shape = tuple(int(s) for s in inp["shape"])
        self._input = inp["index"]
        self._outputs = {d["name"]: d["index"] for d in self._interp.get_output_details()}

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self._interp.set_tensor(self._input, np.ascontiguousarray(x, np.float32).reshape(self.input_shape))
        self._interp.invoke()
        return {k: self._interp.get_tensor(i) for k, i in self._outputs.items()}


@functools.cache
def shared_model(name: str, num_threads: int | None = None) -> TFLiteModel:
    """One interpreter per model file and thread count for the process (not thread-safe: one caller at a time)."""
    return TFLiteModel(name, num_threads)
