"""Exporters, one module per format, registered in :data:`syncopt.core.formats.FORMATS`; back-ends are imported lazily."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from torch import nn

from syncopt.core.artifact import Artifact
from syncopt.core.errors import BackendUnavailable, SyncoptError
from syncopt.core.formats import get_format


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailable` naming the extra that installs it.

    Native start-up logging (TensorFlow's CUDA-plugin and absl lines) is kept off the terminal,
    so an error after it is still the only line on stderr.
    """
    from syncopt.core.log import native_stderr_silenced

    try:
        with native_stderr_silenced():
            return importlib.import_module(module)
    except ImportError as exc:  # includes a module blocked by sys.modules[name] = None
        raise BackendUnavailable(f"{what} needs the '{module}' package: pip install 'syncopt[{extra}]' "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc


def export(model: nn.Module, fmt: str, out_dir: str | os.PathLike, precision: str = "fp32", **options) -> Artifact:
    """Export ``model`` (which carries its spec) to ``fmt``; ``options`` go to that format's exporter."""
    return get_format(fmt).load("exporter")(model, Path(out_dir), precision, **options)


def write_artifact(model: nn.Module, fmt: str, out_dir: Path, precision: str,
                   write: Callable[[Path], Mapping[str, object] | None], tag: str = "",
                   **fields: object) -> Artifact:
    """Write ``<name>_<preset>_<precision><tag><suffix>`` atomically with its manifest and source weights.

    ``write(tmp)`` fills a temporary file (a temporary directory for directory formats) that then
    replaces the target in one rename; it may return further manifest fields (``native``, ``ops``
    ...) that it learns while writing. ``fields`` are manifest fields known beforehand.
    """
    from syncopt import __version__
    from syncopt.core.artifact import atomic_dir, manifest_path, sha256_path
    from syncopt.core.atomic import atomic_path

    row = get_format(fmt)
    spec = model.spec
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, weights_sha = _source_weights(model, out_dir)
    target = out_dir / f"{spec.name}_{spec.preset}_{precision}{tag}{row.suffix}"
    with (atomic_dir if row.directory else atomic_path)(target) as tmp:
        learned = write(tmp) or {}
    artifact = Artifact(format=fmt, precision=precision, file=target.name, sha256=sha256_path(target), spec=spec,
                        source_model=spec.name, source_preset=spec.preset, source_weights=weights.name,
                        source_weights_sha256=weights_sha, syncopt_version=__version__, **fields, **learned)
    artifact.write(manifest_path(target))
    return artifact


def _source_weights(model: nn.Module, out_dir: Path) -> tuple[Path, str]:
    """Save ``model``'s weights as ``<name>_<preset>.safetensors`` in ``out_dir``, or as
    ``<name>_<preset>-<sha256[:12]>.safetensors`` where that name holds other weights (another export into
    the same folder), so no artifact's source weights are ever replaced; the file and its sha256."""
    from syncopt.core.atomic import atomic_path, sha256_file, temp_dir
    from syncopt.models.weights import save_state_dict

    stem = f"{model.spec.name}_{model.spec.preset}"
    with temp_dir("weights") as tmp:
        staged = save_state_dict(model, Path(tmp) / f"{stem}.safetensors")
        digest = sha256_file(staged)
        target = out_dir / f"{stem}.safetensors"
        if target.is_file() and sha256_file(target) != digest:
            target = out_dir / f"{stem}-{digest[:12]}.safetensors"
        if not target.is_file():  # a file of this name holds these weights (the hashed name: by its name)
            with atomic_path(target) as part:
                shutil.copyfile(staged, part)
    return target, digest


@dataclass
class ExportBatch:
    """What :func:`export_formats` made, skipped (back-end or device absent: the reason) and failed."""

    artifacts: list[Artifact] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, SyncoptError]] = field(default_factory=list)


def export_formats(model: nn.Module, formats: list[str], out_dir: str | os.PathLike, precision: str = "fp32",
                   frames: int | None = None, stream_chunk: int | None = None) -> ExportBatch:
    """Export ``model`` to each format on its own: a format whose back-end or hardware is absent is
    skipped with the reason, any other failure is kept and the other formats still export.
    ``stream_chunk``: one streaming step of a causal model (:mod:`syncopt.export.stream`)."""
    from syncopt.export.stream import export_stream

    batch = ExportBatch()
    for fmt in formats:
        try:
            batch.artifacts.append(export_stream(model, fmt, out_dir, stream_chunk, precision) if stream_chunk else
                                   export(model, fmt, out_dir, precision, **get_format(fmt).export_options(frames)))
        except BackendUnavailable as exc:
            batch.skipped.append(f"{fmt}: {exc}")
        except SyncoptError as exc:
            batch.failed.append((f"{fmt}: {exc}", exc))
    return batch
