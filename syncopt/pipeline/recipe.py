"""Recipes: a declarative pipeline in YAML, validated by pydantic (``syncopt run``).

A recipe names the stages it runs, each with its parameters; they always run in this order::

    train -> distill -> prune -> quantize -> export -> parity -> bench -> bundle -> gate

Every stage is optional. ``preset`` and ``seed`` are set once, at the top, for every stage.
Stage parameters are those of the stage's function (:class:`~syncopt.training.train.TrainConfig`,
:class:`~syncopt.compress.distill.DistillConfig` with ``student`` for the student model,
:class:`~syncopt.compress.prune.PruneConfig`, :class:`~syncopt.compress.quantize.QuantizeConfig`,
:class:`~syncopt.deploy.gate.GatesConfig`) plus the small export/parity/bench/bundle sections below.

Stages that need a model take the run directory of the last model stage before them (train,
distill, prune); distill's teacher is the train stage's model. Other inputs are *references*:

- ``train``, ``distill``, ``prune``: that stage's run directory (a torch model);
- ``quantize``: the quantize stage's INT8 artifact;
- ``export:FORMAT:PRECISION``: an artifact of the export stage, e.g. ``export:tflite:int8``;
- anything else: a path (relative to the working directory) or a registered model name.

A malformed recipe raises :class:`~syncopt.core.errors.RecipeError`: one line with the file name and
the field path, e.g. ``recipe.yaml: stages.distill.epochs: Input should be a valid integer``.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
)

from syncopt.compress.distill import DistillConfig
from syncopt.compress.prune import PruneConfig
from syncopt.compress.quantize import QuantizeConfig
from syncopt.core import bounds, yamlfile
from syncopt.core.errors import InputFileError, RecipeError, SyncoptError
from syncopt.deploy.gate import GatesConfig
from syncopt.parity import Tolerance
from syncopt.training.train import TrainConfig

_FORBID = ConfigDict(extra="forbid")
_TOP_LEVEL = ("preset", "seed")  # set once for every stage


def _known_model(name: str) -> str:
    from syncopt.models.registry import get_entry

    try:
        get_entry(name)
    except SyncoptError as exc:
        raise ValueError(str(exc)) from None
    return name


class TrainStage(TrainConfig):
    """Train a model (the teacher, when a distill stage follows)."""

    model_config = _FORBID
    _model_known = field_validator("model")(_known_model)


class DistillStage(DistillConfig):
    """Distil the train stage's model (or ``teacher``, trained here) into ``student``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    model: str = Field(alias="student")
    _models_known = field_validator("model", "teacher")(_known_model)


class PruneStage(PruneConfig):
    """Prune the model of the stage before; ``epochs`` fine-tune each round."""

    model_config = _FORBID
    model: str = Field("", description="set from the stage before")


class QuantizeStage(QuantizeConfig):
    """INT8 from the model of the stage before."""

    model_config = _FORBID


class ExportStage(BaseModel):
    """Export the model of the stage before to every format x precision."""

    model_config = _FORBID
    formats: list[str] = Field(["onnx"], min_length=1)
    precisions: list[str] = Field(["fp32"], min_length=1)
    frames: int | None = Field(None, ge=1, description="TFLite: the fixed clip length T (default: the spec's)")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: list[str]) -> list[str]:
        from syncopt.core.formats import FORMATS

        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown format '{unknown[0]}' (known: {', '.join(FORMATS)})")
        return formats


class ParityStage(BaseModel):
    """Parity of artifacts against their torch source (default: every artifact made before), judged by
    docs/DESIGN.md's tolerances per precision or, per precision, by ``tolerances`` (as in gates files)."""

    model_config = _FORBID
    artifacts: list[str] | None = None
    runtime: str | None = None
    clips: int = Field(8, ge=0)
    random_lengths: list[int] = Field([0, 41], description="clip lengths of random inputs (0: the spec's minimum); "
                                                           "[]: synthetic clips only")
    tolerances: dict[str, Tolerance] = {}


class BenchStage(BaseModel):
    """Latency per target and runtime (default targets: the last model and every artifact)."""

    model_config = _FORBID
    targets: list[str] | None = None
    runtimes: list[str] | None = None
    batches: list[int] = Field([1], min_length=1)
    frames: list[int] | None = None
    threads: int | None = Field(None, ge=1)
    warmup: int = Field(2, ge=0)
    repeats: int = Field(20, ge=1)
    max_seconds: float = Field(10.0, gt=0)


class BundleStage(BaseModel):
    """A mobile bundle of ``source`` (default: the last model stage), checked by ``bundle verify``."""

    model_config = _FORBID
    source: str | None = None
    target: Literal["android", "ios", "both"] = "android"
    frames: int | None = Field(None, ge=1)
    precisions: list[str] = Field(["fp32", "int8"], min_length=1)
    clips: int = Field(4, ge=0)


@dataclass(frozen=True)
class StageKind:
    """One recipe stage: its section's schema, the function that runs it (``module:function``,
    ``run(section, StageContext) -> Outcome``, :mod:`syncopt.pipeline.stages`) and what it makes."""

    name: str
    config: type[BaseModel]
    run: str
    makes: Literal["model", "artifact", "report"]

    def function(self) -> Callable:
        """The stage's run function, imported now."""
        module, _, name = self.run.partition(":")
        return getattr(importlib.import_module(module), name)


_S = "syncopt.pipeline.stages"
# The stages, in the order they run: the one declaration each stage has.
STAGE_KINDS = (
    StageKind("train", TrainStage, f"{_S}:run_train", "model"),
    StageKind("distill", DistillStage, f"{_S}:run_distill", "model"),
    StageKind("prune", PruneStage, f"{_S}:run_prune", "model"),
    StageKind("quantize", QuantizeStage, f"{_S}:run_quantize", "artifact"),
    StageKind("export", ExportStage, f"{_S}:run_export", "artifact"),
    StageKind("parity", ParityStage, f"{_S}:run_parity", "report"),
    StageKind("bench", BenchStage, f"{_S}:run_bench", "report"),
    StageKind("bundle", BundleStage, f"{_S}:run_bundle", "artifact"),
    StageKind("gate", GatesConfig, f"{_S}:run_gate", "report"),  # artifacts and contenders may be references
)
ORDER = tuple(k.name for k in STAGE_KINDS)
KINDS = {k.name: k for k in STAGE_KINDS}
MODEL_STAGES = tuple(k.name for k in STAGE_KINDS if k.makes == "model")
ARTIFACT_STAGES = ("quantize", "export")  # whose artifacts later stages take by reference (see parse_ref)


class _StagesBase(BaseModel):
    model_config = _FORBID

    def present(self) -> list[str]:
        """Names of the stages this recipe runs, in pipeline order."""
        return [name for name in ORDER if getattr(self, name) is not None]


Stages = create_model("Stages", __base__=_StagesBase, **{k.name: (k.config | None, None) for k in STAGE_KINDS})


class Recipe(BaseModel):
    model_config = _FORBID
    name: str | None = None
    description: str = ""
    preset: str = "tiny"
    seed: int = 0
    stages: Stages
    _source: str = PrivateAttr("")

    @property
    def source(self) -> str:
        """The file the recipe was read from."""
        return self._source

    def stage(self, name: str) -> BaseModel:
        return getattr(self.stages, name)

    def model_before(self, stage: str) -> str | None:
        """The last model stage before ``stage`` (its run directory is the stage's model)."""
        before = ORDER[:ORDER.index(stage)]
        return next((s for s in reversed(MODEL_STAGES) if s in before and self.stage(s) is not None), None)

    def artifact_refs(self, before: str) -> list[str]:
        """References to every artifact the stages before ``before`` make."""
        refs = []
        if ORDER.index(before) > ORDER.index("quantize") and self.stages.quantize is not None:
            refs.append("quantize")
        export = self.stages.export
        if ORDER.index(before) > ORDER.index("export") and export is not None:
            refs += [f"export:{f}:{p}" for f in export.formats for p in export.precisions]
        return refs


# -- references ----------------------------------------------------------------------------------

def parse_ref(text: str) -> tuple[str, str | None] | None:
    """``(stage, key)`` for a stage reference (key: ``"fmt:precision"`` for export), None for a path/name."""
    head, _, rest = text.partition(":")
    if head in MODEL_STAGES or head == "quantize":
        return (head, None) if not rest else None
    if head == "export" and rest.count(":") == 1:
        return head, rest
    return None


def _check_ref(recipe: Recipe, text: str, where: str, user: str, artifact_only: bool = False) -> None:
    ref = parse_ref(text)
    if ref is None:
        return
    stage, key = ref
    if recipe.stage(stage) is None:
        raise _error(recipe, where, f"'{text}' refers to the {stage} stage, which this recipe does not run")
    if ORDER.index(stage) >= ORDER.index(user):
        raise _error(recipe, where, f"'{text}' refers to the {stage} stage, which runs after {user}")
    if artifact_only and stage in MODEL_STAGES:
        raise _error(recipe, where, f"'{text}' is a model, not an artifact (use quantize or export:FORMAT:PRECISION)")
    if key is not None:
        fmt, precision = key.split(":")
        export = recipe.stages.export
        if fmt not in export.formats or precision not in export.precisions:
            raise _error(recipe, where, f"'{text}': the export stage makes {', '.join(export.formats)} x "
                                        f"{', '.join(export.precisions)}")


def _check_links(recipe: Recipe) -> None:
    """Cross-stage rules: models come from somewhere, references point backwards, export pairs exist."""
    s = recipe.stages
    present = s.present()
    if not present:
        raise _error(recipe, "stages", f"no stages (choose from {', '.join(ORDER)})")
    from syncopt.models.registry import get_entry

    for where, model in (("stages.train.model", s.train and s.train.model),
                         ("stages.distill.student", s.distill and s.distill.model),
                         ("stages.distill.teacher", s.distill and s.distill.teacher)):
        if model and recipe.preset not in get_entry(model).presets:
            raise _error(recipe, where, f"'{model}' has no preset '{recipe.preset}' (presets: "
                                        f"{', '.join(get_entry(model).presets)})")
    for name in ("prune", "quantize", "export"):
        if recipe.stage(name) is not None and recipe.model_before(name) is None:
            raise _error(recipe, f"stages.{name}", f"needs a model stage before it ({', '.join(MODEL_STAGES)})")
    if s.prune is not None and s.prune.model_fields_set & {"model", "weights"}:
        raise _error(recipe, "stages.prune.model", "the model comes from the stage before; do not set model/weights")
    if s.quantize is not None and "weights" in s.quantize.model_fields_set:
        raise _error(recipe, "stages.quantize.weights", "the model comes from the stage before; do not set weights")
    if s.distill is not None and s.train is not None:
        if "teacher" in s.distill.model_fields_set and s.distill.teacher != s.train.model:
            raise _error(recipe, "stages.distill.teacher", f"'{s.distill.teacher}' is not the train stage's model "
                                                           f"'{s.train.model}' (the train stage trains the teacher)")
        if s.distill.teacher_weights is not None:
            raise _error(recipe, "stages.distill.teacher_weights", "the train stage gives the teacher")
    if s.export is not None:
        from syncopt.core.formats import FORMATS

        for fmt in s.export.formats:
            row = FORMATS[fmt]
            wrong = [p for p in s.export.precisions if p not in row.precisions]
            if wrong:
                raise _error(recipe, "stages.export.precisions",
                             f"{fmt} exports {', '.join(row.precisions)}, not {wrong[0]}"
                             + (f" (INT8 {row.title} comes from the quantize stage)" if wrong[0] in row.quantized else ""))
    if s.parity is not None:
        for i, ref in enumerate(s.parity.artifacts or []):
            _check_ref(recipe, ref, f"stages.parity.artifacts.{i}", "parity", artifact_only=True)
        if s.parity.artifacts is None and not recipe.artifact_refs("parity"):
            raise _error(recipe, "stages.parity", "no artifacts: add a quantize or export stage, or list artifacts")
    if s.bench is not None:
        for i, ref in enumerate(s.bench.targets or []):
            _check_ref(recipe, ref, f"stages.bench.targets.{i}", "bench")
        if s.bench.targets is None and recipe.model_before("bench") is None and not recipe.artifact_refs("bench"):
            raise _error(recipe, "stages.bench", "no targets: add a model or artifact stage, or list targets")
    if s.bundle is not None:
        if s.bundle.source is None and recipe.model_before("bundle") is None:
            raise _error(recipe, "stages.bundle.source", "no model stage before it: name a source")
        if s.bundle.source is not None:
            _check_ref(recipe, s.bundle.source, "stages.bundle.source", "bundle")
    if s.gate is not None:
        for i, g in enumerate(s.gate.parity):
            _check_ref(recipe, g.artifact, f"stages.gate.parity.{i}.artifact", "gate", artifact_only=True)
        for key, c in (s.gate.speed.contenders.items() if s.gate.speed is not None else ()):
            _check_ref(recipe, c.target, f"stages.gate.speed.contenders.{key}.target", "gate")


# -- loading --------------------------------------------------------------------------------------

def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe; :class:`RecipeError` (one line, with the field path) if it is malformed."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"no recipe file at {p}")
    try:
        data = yamlfile.load(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{p.name}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{p.name}:{where} not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{p.name}: a recipe is a mapping with a 'stages' section, not {type(data).__name__}")
    stages = data.get("stages")
    if isinstance(stages, dict):
        for name, section in stages.items():
            for key in _TOP_LEVEL:
                if isinstance(section, dict) and key in section:
                    raise RecipeError(f"{p.name}: stages.{name}.{key}: set {key} once, at the top of the recipe")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{p.name}: {_first_error(exc)}") from None
    recipe._source = str(p)
    _check_ranges(recipe)
    for name in recipe.stages.present():  # the top-level preset and seed reach every stage that has them
        section = recipe.stage(name)
        for key in _TOP_LEVEL:
            if key in type(section).model_fields:
                setattr(section, key, getattr(recipe, key))
    s = recipe.stages
    if s.distill is not None and s.train is not None and "teacher" not in s.distill.model_fields_set:
        s.distill.teacher = s.train.model
    _check_links(recipe)
    return recipe


def _check_ranges(recipe: Recipe) -> None:
    """Numbers against the ranges of the command-line options they mirror (syncopt/core/bounds.py); every
    float finite."""
    checks = [("seed", recipe.seed, bounds.SEED)]
    for stage in recipe.stages.present():
        for key, value in recipe.stage(stage).model_dump().items():
            rng = bounds.RECIPE_FIELDS.get(f"{stage}.{key}") or bounds.RECIPE_FIELDS.get(key)
            checks += [(f"stages.{stage}.{key}", v, rng) for v in (value if isinstance(value, list) else [value])]
    for where, value, rng in checks:
        if isinstance(value, float) and not math.isfinite(value):
            raise _error(recipe, where, f"must be finite, got {value}")
        if rng is not None and value is not None and not isinstance(value, bool) and (
                why := rng.problem(value)) is not None:
            raise _error(recipe, where, why)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(x) for x in err["loc"]]
    if err["type"] == "extra_forbidden" and len(loc) == 2 and loc[0] == "stages":
        return f"stages.{loc[1]}: unknown stage (stages: {', '.join(ORDER)})"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = f" (got {got!r:.60})" if err["type"] not in ("missing", "extra_forbidden") and not isinstance(
        got, (dict, list)) and "Value error" not in err["msg"] else ""
    return f"{'.'.join(loc) + ': ' if loc else ''}{msg}{shown}"


def _error(recipe: Recipe, where: str, message: str) -> RecipeError:
    return RecipeError(f"{Path(recipe.source).name}: {where}: {message}")
