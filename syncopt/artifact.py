"""Exported artifacts and their manifests (``<artifact>.json`` beside the file).

A manifest names the format and precision, holds the model's spec (with the artifact's own
layouts), the sha256 of the artifact file, and the source model with its weights saved next
to it, so parity can rebuild the exact PyTorch reference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from syncopt.atomic import atomic_path, sha256_file
from syncopt.errors import InputFileError, WeightsError
from syncopt.spec import ModelSpec


class Artifact(BaseModel):
    format: str
    precision: str
    file: str  # relative to the manifest's folder
    sha256: str
    spec: ModelSpec
    source_model: str
    source_preset: str
    source_weights: str  # safetensors, relative to the manifest's folder
    syncopt_version: str
    manifest: str = ""  # where this manifest was read from (not stored)

    @property
    def folder(self) -> Path:
        return Path(self.manifest).parent

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def weights_path(self) -> Path:
        return self.folder / self.source_weights

    def write(self, manifest: str | os.PathLike) -> Path:
        """Write the manifest atomically."""
        data = self.model_dump(mode="json", exclude={"manifest"})
        with atomic_path(manifest) as tmp:
            tmp.write_text(json.dumps(data, indent=2))
        self.manifest = str(manifest)
        return Path(manifest)


def manifest_path(artifact_file: str | os.PathLike) -> Path:
    """The manifest beside an artifact file: ``model.onnx`` -> ``model.onnx.json``."""
    return Path(f"{artifact_file}.json")


def load_artifact(path: str | os.PathLike) -> Artifact:
    """Read an artifact's manifest (given the artifact or the manifest) and verify the file's sha256."""
    p = Path(path)
    manifest = p if p.suffix == ".json" else manifest_path(p)
    if not manifest.is_file():
        raise InputFileError(f"no artifact manifest at {manifest} (export with syncopt export)")
    try:
        artifact = Artifact.model_validate_json(manifest.read_text())
    except (ValidationError, ValueError) as exc:
        raise WeightsError(f"malformed manifest {manifest.name}: {str(exc).splitlines()[0]}") from exc
    artifact.manifest = str(manifest)
    if not artifact.path.is_file():
        raise InputFileError(f"artifact file missing: {artifact.path}")
    if sha256_file(artifact.path) != artifact.sha256:
        raise WeightsError(f"sha256 of {artifact.path.name} does not match its manifest (modified or truncated)")
    return artifact
