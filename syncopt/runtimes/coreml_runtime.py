"""CoreML through coremltools' MLModel.predict (macOS only); batch items run one by one."""

from __future__ import annotations

import os

import numpy as np

from syncopt.core.artifact import Artifact
from syncopt.core.errors import BackendUnavailable
from syncopt.export import require
from syncopt.runtimes import Session


class CoreMLSession(Session):
    name = "coreml"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        if os.uname().sysname != "Darwin":
            raise BackendUnavailable("CoreML prediction needs macOS (on Linux, syncopt validates the package's structure only)")
        ct = require("coremltools", "coreml", "The CoreML runtime")
        super().__init__(artifact.spec)
        self.model = ct.models.MLModel(str(artifact.path), compute_units=ct.ComputeUnit.ALL)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = next(iter(feeds.values())).shape[0]
        items = [self.model.predict({k: v[b:b + 1] for k, v in feeds.items()}) for b in range(batch)]
        return {name: np.concatenate([np.asarray(item[name], np.float32) for item in items])
                for name in self.spec.output_names}
