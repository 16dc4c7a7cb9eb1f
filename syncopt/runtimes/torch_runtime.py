"""PyTorch eager runtime: the artifact's source model with its saved weights (the reference)."""

from __future__ import annotations

import numpy as np
import torch

from syncopt.core.artifact import Artifact
from syncopt.models.registry import create
from syncopt.runtimes import Session


class TorchSession(Session):
    name = "torch"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        self.model = create(artifact.source_model, artifact.source_preset, weights=artifact.weights_path)
        super().__init__(self.model.spec)
        self.threads = threads

    @torch.no_grad()
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.threads:
            torch.set_num_threads(self.threads)
        out = self.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}
