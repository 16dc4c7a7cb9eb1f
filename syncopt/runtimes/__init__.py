"""Runtimes: ``load(artifact) -> Session``; ``Session.run(feeds) -> {output name: array}``.

Every session checks its feeds against the spec first (names, shapes, dtypes, NaN/Inf) and
returns outputs keyed by the spec's output names, whatever the back-end.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import torch

from syncopt.core.artifact import Artifact, load_artifact
from syncopt.core.errors import InputSpecError, UsageError
from syncopt.core.formats import EXTRA_RUNTIMES, FORMATS
from syncopt.core.spec import ModelSpec

# runtime -> "module:class", from the formats table; the class is built as cls(artifact, threads=...)
RUNTIMES = EXTRA_RUNTIMES | {f.runtime: f.session for f in FORMATS.values()}
DEFAULT_RUNTIME = {f.name: f.runtime for f in FORMATS.values()}


class Session:
    """Base class: validation and naming; back-ends implement ``_run`` on float32 numpy arrays."""

    name = "base"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def run(self, feeds: dict[str, np.ndarray | torch.Tensor]) -> dict[str, np.ndarray]:
        tensors = {k: _as_tensor(self.spec.name, k, v) for k, v in feeds.items()}
        self.spec.validate_inputs(tensors)
        arrays = {k: v.numpy() for k, v in tensors.items()}
        return self._run(arrays)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _as_tensor(model: str, name: str, value: object) -> torch.Tensor:
    """``value`` as a CPU tensor without autograd history, or :class:`InputSpecError` naming the feed."""
    try:
        return torch.as_tensor(value).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputSpecError(f"{model}: input '{name}' is {type(value).__name__}, not a numeric array "
                             f"({str(exc).splitlines()[0][:120]})") from exc


def load(artifact: Artifact | str | os.PathLike, runtime: str | None = None, threads: int | None = None) -> Session:
    """Open ``artifact`` (or its path) in ``runtime`` (default: the format's own)."""
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    runtime = runtime or DEFAULT_RUNTIME.get(art.format)
    if runtime not in RUNTIMES:
        raise UsageError(f"no runtime '{runtime}' for {art.format} artifacts (known: {', '.join(RUNTIMES)})")
    module, cls = RUNTIMES[runtime].split(":")
    return getattr(importlib.import_module(module), cls)(art, threads=threads)
