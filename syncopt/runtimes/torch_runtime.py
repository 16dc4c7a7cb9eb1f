"""PyTorch eager runtime: the artifact's source model with its saved weights (the reference)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from syncopt.core.artifact import Artifact
from syncopt.models.registry import create
from syncopt.runtimes import Session


class TorchSession(Session):
    """The eager model behind the Session interface (the same input validation as every runtime)."""

    name = "torch"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        self._open(create(artifact.source_model, artifact.source_preset, weights=artifact.weights_path), threads)

    @classmethod
    def of(cls, model: nn.Module, threads: int | None = None) -> TorchSession:
        """A session of a model in memory (benchmarks of models that are not artifacts)."""
        session = cls.__new__(cls)
        session._open(model, threads)
        return session

    def _open(self, model: nn.Module, threads: int | None) -> None:
        self.model = model
        super().__init__(model.spec)
        self.threads = threads

    @torch.no_grad()
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.threads:
            torch.set_num_threads(self.threads)
        out = self.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}
