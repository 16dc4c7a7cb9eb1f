"""Running a recipe: one folder per stage with a manifest, skipping what is unchanged, resuming.

RUNDIR/<stage>/stage.json is written atomically when a stage ends (status ``done`` or
``failed``): its parameters, the sha256 of its inputs (the outputs of the stages it reads, and
any files it names), the sha256 of every file it wrote, its wall time and summary rows. A stage
is skipped when its manifest says ``done``, its parameters and input hashes are the same as now
and its outputs still hash to what the manifest says; ``force`` reruns named stages. A folder of
training videos (``data``) is not hashed: force the stages that read it after changing it.

Interruptions: a stage's manifest is removed before it starts and written only at its end, so
a stage killed mid-way has none and runs again; the finished stages before it are skipped. While
a stage runs, a ``.pending.json`` marker holds its parameters and inputs: training stages (train,
distill, prune) rerun with the same ones keep their folder and continue from their epoch
checkpoints; every other case starts from an empty folder.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from syncopt.core.artifact import sha256_path
from syncopt.core.atomic import atomic_path, sha256_file
from syncopt.core.errors import OutputFileError, SyncoptError, UsageError
from syncopt.core.log import status
from syncopt.pipeline.recipe import (
    ARTIFACT_STAGES,
    KINDS,
    MODEL_STAGES,
    ORDER,
    Recipe,
    parse_ref,
)
from syncopt.pipeline.stages import Outcome, StageContext, SummaryRow

MANIFEST = "stage.json"
PENDING = ".pending.json"
RESUMABLE = ("train", "distill", "prune")  # stages that continue from their own checkpoints


class StageManifest(BaseModel):
    stage: str
    status: Literal["done", "failed"]
    params: dict
    inputs: dict[str, str]  # path (relative to RUNDIR, or as named in the recipe) -> sha256
    outputs: dict[str, str]  # path relative to RUNDIR -> sha256
    artifacts: dict[str, str]  # reference key ("" or "fmt:precision") -> path relative to RUNDIR
    rows: list[SummaryRow]
    started: str
    finished: str
    wall_time_s: float
    syncopt_version: str
    error: str = ""


class StageRun(BaseModel):
    stage: str
    action: Literal["ran", "skipped", "failed"]
    wall_time_s: float  # of the run that made the outputs (an earlier one for a skipped stage)
    rows: list[SummaryRow]


class RunReport(BaseModel):
    recipe: str
    run_dir: str
    stages: list[StageRun]
    wall_time_s: float  # this invocation
    error: str = ""


@dataclass
class RunResult:
    report: RunReport
    error: SyncoptError | None  # the failed stage's error; the summary is written either way


def run_recipe(recipe: Recipe, run_dir: str | Path, force: tuple[str, ...] = ()) -> RunResult:
    """Run the recipe's stages in order into ``run_dir``; see the module docstring."""
    present = recipe.stages.present()
    bad = [f for f in force if f not in present]
    if bad:
        raise UsageError(f"--force {bad[0]}: not a stage of this recipe ({', '.join(present)})")
    root = Path(run_dir).resolve()
    if root.exists() and not root.is_dir():
        raise OutputFileError(f"{run_dir}: not a directory (the run directory holds one folder per stage)")
    t0 = time.perf_counter()
    done: dict[str, StageManifest] = {}
    runs: list[StageRun] = []
    error: SyncoptError | None = None
    for i, name in enumerate(present, 1):
        section = recipe.stage(name)
        params = section.model_dump(mode="json")
        inputs = _inputs(recipe, name, root, done)
        folder = root / name
        old = _read_manifest(folder / MANIFEST)
        if name not in force and old is not None and _unchanged(old, params, inputs, root):
            status(f"[{i}/{len(present)}] {name}: unchanged, skipped")
            done[name] = old
            runs.append(StageRun(stage=name, action="skipped", wall_time_s=old.wall_time_s, rows=old.rows))
            continue
        status(f"[{i}/{len(present)}] {name}: running")
        manifest, error = _run_stage(recipe, name, section, params, inputs, root, done, fresh=name in force)
        status(f"[{i}/{len(present)}] {name}: {manifest.status} in {manifest.wall_time_s:.0f} s")
        runs.append(StageRun(stage=name, action="ran" if manifest.status == "done" else "failed",
                             wall_time_s=manifest.wall_time_s, rows=manifest.rows))
        if error is not None:
            break
        done[name] = manifest
    report = RunReport(recipe=recipe.source, run_dir=str(root), stages=runs, wall_time_s=time.perf_counter() - t0,
                       error="" if error is None else f"{runs[-1].stage}: {error}")
    with atomic_path(root / "summary.json") as tmp:
        tmp.write_text(report.model_dump_json(indent=2))
    return RunResult(report, error)


def _run_stage(recipe: Recipe, name: str, section: BaseModel, params: dict, inputs: dict[str, str], root: Path,
               done: dict[str, StageManifest], fresh: bool) -> tuple[StageManifest, SyncoptError | None]:
    folder = root / name
    marker = {"params": params, "inputs": inputs}
    pending = folder / PENDING
    keep = not fresh and name in RESUMABLE and pending.is_file() and _json(pending) == marker
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    with atomic_path(pending) as tmp:
        tmp.write_text(json.dumps(marker))
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    ctx = StageContext(recipe=recipe, name=name, folder=folder, resolve=lambda ref: _resolve(ref, root, done))
    try:
        outcome = KINDS[name].function()(section, ctx)
    except SyncoptError as exc:
        outcome = Outcome(error=exc)
    manifest = StageManifest(
        stage=name, status="done" if outcome.error is None else "failed", params=params, inputs=inputs,
        outputs=_outputs(folder, root), artifacts={k: _rel(Path(v), root) for k, v in outcome.artifacts.items()},
        rows=outcome.rows, started=started.isoformat(timespec="milliseconds"),
        finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        wall_time_s=time.perf_counter() - t0, syncopt_version=_version(),
        error="" if outcome.error is None else str(outcome.error))
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(manifest.model_dump_json(indent=2))
    pending.unlink(missing_ok=True)
    return manifest, outcome.error


def _inputs(recipe: Recipe, name: str, root: Path, done: dict[str, StageManifest]) -> dict[str, str]:
    """sha256 of what stage ``name`` reads: the outputs of the stages it refers to, and named files."""
    stages = {s for s in (_refs(recipe, name)) if s in done}
    inputs = {path: sha for s in sorted(stages) for path, sha in done[s].outputs.items()}
    for text in _refs(recipe, name, external=True):
        path = Path(text)
        if path.exists():
            inputs[text] = sha256_path(path)
    return inputs


def _refs(recipe: Recipe, name: str, external: bool = False) -> list[str]:
    """Stages that ``name`` reads (or, with ``external``, the paths it names that are not references)."""
    section = recipe.stage(name)
    named: list[str] = []
    if name == "distill" and section.teacher_weights:
        named.append(section.teacher_weights)
    if name == "train":
        named += [w for w in (section.video_weights, section.audio_weights) if w]
    for key in ("artifacts", "targets"):
        named += getattr(section, key, None) or []
    if name == "bundle" and section.source:
        named.append(section.source)
    if name == "gate":
        named += [g.artifact for g in section.parity]
        named += [c.target for c in section.speed.contenders.values()] if section.speed is not None else []
    if external:
        return [t for t in named if parse_ref(t) is None]
    stages = [parse_ref(t)[0] for t in named if parse_ref(t) is not None]
    bench_defaults = name == "bench" and section.targets is None
    if name == "distill":
        stages.append("train")
    if name in ("prune", "quantize", "export") or (name == "bundle" and not section.source) or bench_defaults:
        stages.append(recipe.model_before(name))
    if (name == "parity" and section.artifacts is None) or bench_defaults:
        stages += [s for s in ARTIFACT_STAGES if recipe.stage(s) is not None and ORDER.index(s) < ORDER.index(name)]
    return [s for s in dict.fromkeys(stages) if s is not None]


def _resolve(text: str, root: Path, done: dict[str, StageManifest]) -> str:
    """A reference -> the path it names (a run directory or an artifact); anything else unchanged."""
    ref = parse_ref(text)
    if ref is None:
        return text
    stage, key = ref
    if stage in MODEL_STAGES:
        return str(root / stage)
    return str(root / done[stage].artifacts[key or ""])


def _unchanged(old: StageManifest, params: dict, inputs: dict[str, str], root: Path) -> bool:
    if old.status != "done" or old.params != params or old.inputs != inputs:
        return False
    return all((root / p).is_file() and sha256_file(root / p) == sha for p, sha in old.outputs.items())


def _outputs(folder: Path, root: Path) -> dict[str, str]:
    """sha256 of every file the stage wrote (hidden files — markers, temporary files — excepted)."""
    return {_rel(f, root): sha256_file(f) for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != MANIFEST and not any(part.startswith(".") for part in f.relative_to(folder).parts)}


def _read_manifest(path: Path) -> StageManifest | None:
    try:
        return StageManifest.model_validate_json(path.read_text())
    except (OSError, ValidationError, ValueError):
        return None


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rel(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root).as_posix()


def _version() -> str:
    from syncopt import __version__

    return __version__


