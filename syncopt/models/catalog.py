"""What ``syncopt models`` reports: each registered model's size and cost, measured.

Counting builds every model on the meta device and traces one forward (seconds, most of it importing
torch and transformers), so the table is kept in the user's cache, keyed by the sha256 of syncopt's
source and the versions of torch and transformers: a later listing reads it without importing either.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from syncopt.core.errors import UsageError


class ModelInfo(BaseModel):
    name: str
    preset: str
    summary: str
    params: int
    macs: int
    frames: int
    inputs: dict[str, str]
    outputs: list[str]
    min_frames: int
    max_offset: int


def describe_model(name: str, preset: str) -> ModelInfo:
    """Build ``name`` on the meta device and count its parameters and MACs at the standard input."""
    import torch

    from syncopt.models.complexity import count_macs, count_params
    from syncopt.models.registry import create, get_entry

    with torch.device("meta"):
        model = create(name, preset)
    spec = model.spec
    return ModelInfo(
        name=name,
        preset=preset,
        summary=get_entry(name).summary,
        params=count_params(model),
        macs=count_macs(model, spec),
        frames=spec.standard_frames,
        inputs={t.name: "x".join(map(str, t.shape)) for t in spec.inputs},
        outputs=spec.output_names,
        min_frames=spec.min_frames,
        max_offset=spec.max_offset,
    )


def describe_models(preset: str = "full", cache_dir: str | os.PathLike | None = None) -> list[ModelInfo]:
    """:func:`describe_model` for every registered model; ``preset='all'`` lists every preset. Read from
    ``cache_dir`` (default ``$XDG_CACHE_HOME/syncopt/catalog``) when this source tree counted them before."""
    from syncopt.core.atomic import atomic_path

    if preset not in ("tiny", "full", "all"):
        raise UsageError(f"unknown preset '{preset}' (choose tiny, full or all)")
    cached = Path(cache_dir or _default_cache_dir()) / f"models_{preset}_{_source_key()[:16]}.json"
    try:
        return [ModelInfo.model_validate(row) for row in json.loads(cached.read_text())]
    except (OSError, ValueError):  # absent or damaged: count again
        pass
    rows = _count(preset)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            tmp.write_text(json.dumps([r.model_dump() for r in rows]))
    except OSError:  # a read-only home: the listing still works, uncached
        pass
    return rows


def _count(preset: str) -> list[ModelInfo]:
    from syncopt.models.registry import get_entry, model_names

    rows = []
    for name in model_names():
        presets = get_entry(name).presets if preset == "all" else (preset,)
        rows += [describe_model(name, p) for p in presets if p in get_entry(name).presets]
    return rows


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "syncopt" / "catalog"


def _source_key() -> str:
    """sha256 of every syncopt source file and of the torch and transformers versions."""
    digest = hashlib.sha256()
    for package in ("torch", "transformers"):
        try:
            digest.update(f"{package} {metadata.version(package)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package} absent\n".encode())
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
