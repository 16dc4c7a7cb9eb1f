"""TFLite through the ai-edge-litert Interpreter (XNNPACK on CPU), thread count settable.

Feeds and outputs use the spec's layouts; the session transposes them to and from the
artifact's own (channels-last) layouts, and runs batch items one by one because TFLite
artifacts are fixed at batch 1 and one clip length (see syncopt.export.tflite).
"""

from __future__ import annotations

import numpy as np

from syncopt.core.artifact import Artifact, permutation
from syncopt.core.errors import InputSpecError
from syncopt.core.log import native_stderr_silenced
from syncopt.export import require
from syncopt.export.tflite import input_name
from syncopt.runtimes import Session


class TFLiteSession(Session):
    name = "tflite"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        litert = require("ai_edge_litert.interpreter", "tflite", "The TFLite runtime")
        super().__init__(artifact.spec)
        self.artifact = artifact
        if any(op.startswith("Flex") for op in artifact.ops):
            require("tensorflow", "tflite", "A TFLite model with Flex ops")  # importing TF registers the Flex delegate
        with native_stderr_silenced():  # LiteRT's C++ logger announces the XNNPACK delegate on fd 2
            self.interpreter = litert.Interpreter(model_path=str(artifact.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        self.inputs = {input_name(d["name"]): d["index"] for d in self.interpreter.get_input_details()}
        self.outputs = [d["index"] for d in self.interpreter.get_output_details()]  # in the spec's output order

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = self.spec.infer_sizes(feeds).get("T", self.artifact.frames)  # a spec with fixed shapes has no T
        if self.artifact.frames is not None and frames != self.artifact.frames:
            raise InputSpecError(f"{self.spec.name}: this TFLite artifact is fixed at T={self.artifact.frames} frames, "
                                 f"got {frames} (export it with --frames {frames}, or feed {self.artifact.frames}-frame windows)")
        batch = next(iter(feeds.values())).shape[0]
        results: dict[str, list[np.ndarray]] = {name: [] for name in self.spec.output_names}
        for b in range(batch):
            for t in self.spec.inputs:
                x = feeds[t.name][b:b + 1].transpose(self._perm(t.name, t.layout))
                self.interpreter.set_tensor(self.inputs[t.name], np.ascontiguousarray(x))
            self.interpreter.invoke()
            for t, index in zip(self.spec.outputs, self.outputs):
                y = self.interpreter.get_tensor(index)
                results[t.name].append(y.transpose(np.argsort(self._perm(t.name, t.layout))))
        return {name: np.concatenate(ys) for name, ys in results.items()}

    def _perm(self, name: str, layout: str) -> tuple[int, ...]:
        native = self.artifact.native_tensor(name)
        return permutation(layout, native.layout if native else layout)
