"""ONNX Runtime (CPU; other execution providers when installed and available).

An artifact fixed at batch 1 (INT8 with lowered 3D convolutions, see syncopt.compress.quantize)
runs the items of a larger batch one by one.
"""

from __future__ import annotations

import numpy as np

from syncopt.core.artifact import Artifact
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
        self.one_by_one = artifact.batch == 1

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = next(iter(feeds.values())).shape[0]
        if not self.one_by_one or batch == 1:
            return dict(zip(self.spec.output_names, self.session.run(self.spec.output_names, feeds)))
        items = [self.session.run(self.spec.output_names, {k: v[b:b + 1] for k, v in feeds.items()})
                 for b in range(batch)]
        return {name: np.concatenate([item[i] for item in items]) for i, name in enumerate(self.spec.output_names)}
