"""Exported artifacts and their manifests (``<artifact>.json`` beside the file).

A manifest names the format and precision, holds the model's spec, the artifact's own tensors
where they differ from it (layouts such as NTHWC, fixed batch/time sizes), the sha256 of the
artifact (a file, or a directory such as a CoreML ``.mlpackage``), and the source model with
its weights saved next to it, so parity can rebuild the exact PyTorch reference.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from syncopt.core.atomic import atomic_dir, atomic_path, sha256_file  # noqa: F401 (atomic_dir: re-exported)
from syncopt.core.errors import InputFileError, WeightsError
from syncopt.core.spec import ModelSpec, TensorSpec, resolve_dim


class Artifact(BaseModel):
    format: str
    precision: str
    file: str  # relative to the manifest's folder (a file or a package directory)
    sha256: str
    spec: ModelSpec  # the model's IO as every runtime's Session.run takes and returns it
    native: tuple[TensorSpec, ...] = ()  # the artifact's own tensors where they differ (layout, shape)
    frames: int | None = None  # the clip length T the artifact is fixed at; None: any T >= min_frames
    batch: int | None = None  # the batch size the artifact is fixed at; None: dynamic
    ops: list[str] = []  # operator types in the artifact, where the exporter lists them
    float_ops: list[str] = []  # INT8 artifacts: operators an accuracy fallback returned to float
    source_model: str
    source_preset: str
    source_weights: str  # safetensors, relative to the manifest's folder
    source_weights_sha256: str = ""  # "": not recorded (manifests before 2026-12-08, bundles)
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
        """The source weights, checked against their recorded sha256 (:class:`WeightsError` if they changed)."""
        path = self.folder / self.source_weights
        if self.source_weights_sha256 and path.is_file() and sha256_file(path) != self.source_weights_sha256:
            raise WeightsError(f"source weights {path.name} of {self.file} changed since it was exported "
                               f"(sha256 differs from its manifest's); re-export it")
        return path

    def native_tensor(self, name: str) -> TensorSpec | None:
        """The artifact's own description of tensor ``name``, if it differs from the spec's."""
        return next((t for t in self.native if t.name == name), None)

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
    if not artifact.path.exists():
        raise InputFileError(f"artifact file missing: {artifact.path}")
    if sha256_path(artifact.path) != artifact.sha256:
        raise WeightsError(f"sha256 of {artifact.path.name} does not match its manifest (modified or truncated)")
    check_claims(artifact)
    return artifact


def check_claims(artifact: Artifact) -> None:
    """Check a manifest's claims against the artifact itself: the graph parses, its tensors are the
    spec's (names; fixed sizes, and the claimed clip length T and batch), and the spec is the
    claimed source model's. A sha256 only proves the file is the one the manifest was written
    for, not that the manifest is true. :class:`WeightsError` (one line) names the first lie."""
    name = artifact.path.name
    if (artifact.spec.name, artifact.spec.preset) != (artifact.source_model, artifact.source_preset):
        raise WeightsError(f"manifest of {name} claims source model {artifact.source_model}/{artifact.source_preset} "
                           f"but holds the spec of {artifact.spec.name}/{artifact.spec.preset}")
    reader = _GRAPH_READERS.get(artifact.format)
    if reader is None:
        return
    try:
        graph = reader(artifact.path)
    except ImportError:  # the back-end is not installed: its runtime reports that when used
        return
    except Exception as exc:  # noqa: BLE001 — protobuf's DecodeError, onnx's own errors: all mean unreadable
        raise WeightsError(f"{name} is not a readable {artifact.format} graph ({type(exc).__name__}); "
                           f"re-export it") from exc
    sizes = {k: v for k, v in (("B", artifact.batch), ("T", artifact.frames)) if v is not None}
    tensors = [artifact.native_tensor(t.name) or t for t in (*artifact.spec.inputs, *artifact.spec.outputs)]
    if sorted(graph) != sorted(t.name for t in tensors):
        raise WeightsError(f"manifest of {name} claims tensors {', '.join(t.name for t in tensors)}; "
                           f"the graph has {', '.join(graph)}")
    for t in tensors:
        claimed = tuple(_claimed_dim(d, sizes) for d in t.shape)
        actual = graph[t.name]
        lie = len(claimed) != len(actual) or any(c is not None and c != a for c, a in zip(claimed, actual))
        if lie:
            shown = lambda dims: "x".join("?" if d is None else str(d) for d in dims)  # noqa: E731
            raise WeightsError(f"manifest of {name} claims {t.name} {shown(claimed)}"
                               f"{f' (T={artifact.frames})' if artifact.frames else ''}; the graph's is {shown(actual)}")


def _claimed_dim(dim: int | str, sizes: dict[str, int]) -> int | None:
    try:
        return resolve_dim(dim, sizes)
    except KeyError:  # a dynamic axis
        return None


def _onnx_tensors(path: Path) -> dict[str, tuple[int | None, ...]]:
    """Graph inputs and outputs of an ONNX file: name -> dims (None: symbolic)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
            for v in (*graph.input, *graph.output)}


_GRAPH_READERS = {"onnx": _onnx_tensors}  # formats whose graph syncopt reads without running it


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory: over its files' relative paths and contents, sorted."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    digest = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        digest.update(f"{f.relative_to(p).as_posix()}\0{sha256_file(f)}\n".encode())
    return digest.hexdigest()


def permutation(src: str, dst: str) -> tuple[int, ...]:
    """Axes of a ``src``-layout tensor in ``dst`` order: ``x.transpose(permutation("NCT", "NTC"))``."""
    if sorted(src) != sorted(dst):
        raise ValueError(f"layouts {src} and {dst} do not have the same axes")
    return tuple(src.index(axis) for axis in dst)
