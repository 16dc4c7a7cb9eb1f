"""What a model argument names: one answer to "what can I pass here", used by every command.

A reference is a registered model name (``fcn_lips``), ``name=weights``, a run directory written by
``syncopt train`` / ``distill`` / ``prune`` (its ``config.json`` names the model and preset), or an
artifact (file, directory or manifest, :func:`syncopt.core.artifact.load_artifact`). Weights shipped
inside the package (``syncopt/assets/<model>_<preset>_<domain>.safetensors``) stand in when a command
asks for them and none are given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from syncopt.core.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from syncopt.core.artifact import Artifact

DEFAULT_MODEL = ("fcn_lips", "full")  # what `syncopt sync` and `evaluate --data` use when no model is named
SHIPPED_DOMAINS = ("real", "synth")  # syncopt/assets/<model>_<preset>_<domain>.safetensors, preferred first


@dataclass(frozen=True)
class Source:
    """A resolved model argument: the registered model, its preset, and its weights or artifact."""

    ref: str  # as given
    name: str
    preset: str
    weights: Path | None = None  # None: a fresh build (random initialisation)
    artifact: Artifact | None = None

    @property
    def label(self) -> str:
        return Path(self.artifact.file).name if self.artifact is not None else self.ref

    @property
    def synthetic(self) -> bool:
        """The weights are the package's synthetic-data ones (trained on no real video)."""
        return self.weights is not None and self.weights.stem.endswith("_synth")

    def build(self) -> nn.Module:
        """The torch model with these weights (an artifact's source model and weights)."""
        from syncopt.models.registry import create

        return create(self.name, self.preset, weights=self.weights)


def resolve(ref: str | os.PathLike | None, preset: str | None = None, weights: str | os.PathLike | None = None,
            shipped: bool = False) -> Source:
    """What ``ref`` names (see the module docstring; None: :data:`DEFAULT_MODEL`). ``preset`` applies
    to a bare name (default tiny); ``weights`` may itself be a run directory; with ``shipped`` a bare
    name without weights takes the package's shipped weights, or is an error."""
    if ref is None:
        ref, preset = DEFAULT_MODEL[0], preset or DEFAULT_MODEL[1]
    text = str(ref)
    if weights is None and "=" in text and not Path(text).exists():
        text, _, weights = text.partition("=")
    if weights is not None and Path(weights).is_dir():
        return resolve(weights)
    path = Path(text)
    if path.is_dir() and not _is_artifact_dir(path):
        config = path / "config.json"
        if not config.is_file():
            raise UsageError(f"{path} is a directory without config.json (expected a run directory from syncopt "
                             "train, distill or prune)")
        cfg = json.loads(config.read_text())
        return Source(text, cfg["model"], cfg["preset"], path / "model.safetensors")
    if path.exists() or _looks_like_artifact(path):
        from syncopt.core.artifact import load_artifact

        art = load_artifact(path)
        return Source(text, art.source_model, art.source_preset, art.weights_path, art)
    from syncopt.models.registry import get_entry

    get_entry(text)  # an unknown name is that (with suggestions), not a model without weights
    preset = preset or "tiny"
    if weights is None and shipped:
        weights = shipped_weights(text, preset)
        if weights is None:
            raise UsageError(f"no weights for {text} (preset {preset}): pass --weights "
                             f"(shipped weights: {', '.join(available_shipped())})")
    return Source(text, text, preset, Path(weights) if weights is not None else None)


def _looks_like_artifact(path: Path) -> bool:
    """A name with an artifact's suffix (or a manifest's): a missing artifact, not an unknown model."""
    from syncopt.core.formats import FORMATS

    return path.suffix == ".json" or any(path.name.endswith(f.suffix) for f in FORMATS.values())


def _is_artifact_dir(path: Path) -> bool:
    from syncopt.core.artifact import manifest_path

    return manifest_path(path).is_file()


def shipped_weights(model: str, preset: str) -> Path | None:
    """Weights trained by the project and shipped in the package, if any: trained on real video
    (``*_real``) before synthetic-only (``*_synth``)."""
    folder = resources.files("syncopt") / "assets"
    for domain in SHIPPED_DOMAINS:
        path = folder / f"{model}_{preset}_{domain}.safetensors"
        if path.is_file():
            return Path(str(path))
    return None


def available_shipped() -> list[str]:
    """``<model>_<preset>`` of every shipped weights file (``["none"]`` when there are none)."""
    folder = resources.files("syncopt") / "assets"
    stems = [p.name.removesuffix(".safetensors") for p in folder.iterdir() if p.name.endswith(".safetensors")
             ] if folder.is_dir() else []
    return sorted(stem.rsplit("_", 1)[0] for stem in stems if stem.rsplit("_", 1)[-1] in SHIPPED_DOMAINS) or ["none"]


def training_summary(weights: str | os.PathLike) -> str | None:
    """What weights were trained on: the ``summary`` of the manifest ``<weights stem>.json`` beside them."""
    manifest = Path(weights).with_suffix(".json")
    if not manifest.is_file():
        return None
    try:
        return str(json.loads(manifest.read_text())["summary"])
    except (ValueError, KeyError, TypeError):
        return None
