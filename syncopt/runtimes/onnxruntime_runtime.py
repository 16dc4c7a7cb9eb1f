"""ONNX Runtime (CPU; other execution providers when installed and available)."""

from __future__ import annotations

import numpy as np

from syncopt.artifact import Artifact
from syncopt.runtimes import Session


class OrtSession(Session):
    name = "onnxruntime"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(artifact.spec)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        preferred = ["CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in preferred if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(artifact.path), options, providers=providers)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.spec.output_names, feeds)
        return dict(zip(self.spec.output_names, outputs))
