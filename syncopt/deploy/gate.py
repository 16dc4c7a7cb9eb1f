"""CI gates: parity per precision, speed as ratios measured in the same run, optional absolute budgets.

A gates file (YAML, validated by pydantic; paths relative to the working directory)::

    machine: ci-2core            # this run's machine name (or --machine / $SYNCOPT_MACHINE)
    parity:
      - artifact: artifacts/x3d_s_tiny_int8.onnx
        clips: 4                 # synthetic clips besides the random inputs
    tolerances:                  # optional, stricter (or looser) than docs/DESIGN.md per precision
      int8: {min_cosine: 0.995}
    speed:
      frames: 25                 # clip length (TFLite contenders run at their own T)
      rounds: 5                  # interleaved rounds: each contender once per round, order rotated
      contenders:
        fp32: {target: artifacts/x3d_s_tiny_fp32.onnx}
        int8: {target: artifacts/x3d_s_tiny_int8.onnx}
      ratios:
        - {faster: int8, slower: fp32, at_least: 1.8}
      budgets:                   # absolute, only on the named machine
        - {contender: int8, machine: ci-2core, max_ms: 40}

A ratio compares seconds of video processed per second (so contenders at different clip lengths
compare fairly) as the median over rounds of the per-round ratio: both contenders run in every
round, so load from other jobs hits both. Budgets compare a contender's median latency.
"""

from __future__ import annotations

import functools
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from syncopt.core.atomic import atomic_path, temp_dir
from syncopt.core.errors import InputFileError, SyncoptError, UsageError
from syncopt.parity import Tolerance


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_runtime(runtime: str | None) -> str | None:
    from syncopt.core.formats import runtime_formats

    if runtime is not None and runtime not in runtime_formats():
        raise ValueError(f"unknown runtime '{runtime}' (known: {', '.join(runtime_formats())})")
    return runtime


class ParityGate(_Strict):
    artifact: str
    runtime: str | None = None
    clips: int = Field(4, ge=0)
    name: str | None = None
    _runtime_known = field_validator("runtime")(_known_runtime)


class Contender(_Strict):
    target: str = Field(description="artifact, run directory or model name (see syncopt bench)")
    runtime: str | None = None
    preset: str = "tiny"
    _runtime_known = field_validator("runtime")(_known_runtime)


class RatioGate(_Strict):
    faster: str
    slower: str
    at_least: float = Field(gt=0, allow_inf_nan=False)
    name: str | None = None


class Budget(_Strict):
    contender: str
    max_ms: float = Field(gt=0, allow_inf_nan=False)
    machine: str


class SpeedGates(_Strict):
    frames: int | None = Field(None, ge=1)
    batch: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1)
    warmup: int = Field(2, ge=0)
    rounds: int = Field(5, ge=1)
    contenders: dict[str, Contender]
    ratios: list[RatioGate] = []
    budgets: list[Budget] = []

    @model_validator(mode="after")
    def _known_contenders(self) -> SpeedGates:
        for i, r in enumerate(self.ratios):
            for side in ("faster", "slower"):
                if getattr(r, side) not in self.contenders:
                    raise ValueError(f"ratios.{i}.{side}: '{getattr(r, side)}' is not a contender "
                                     f"({', '.join(self.contenders)})")
        for i, b in enumerate(self.budgets):
            if b.contender not in self.contenders:
                raise ValueError(f"budgets.{i}.contender: '{b.contender}' is not a contender")
        return self


class GatesConfig(_Strict):
    machine: str | None = None
    parity: list[ParityGate] = []
    tolerances: dict[str, Tolerance] = {}
    speed: SpeedGates | None = None


class GateResult(BaseModel):
    kind: str  # parity | ratio | budget
    name: str
    status: str  # passed | failed | skipped
    value: float | None = None
    threshold: str = ""
    message: str = ""
    seconds: float = 0.0


def load_config(path: str | os.PathLike) -> GatesConfig:
    """Parse and validate a gates file; :class:`UsageError` with the field path on one line."""
    import yaml

    from syncopt.core import yamlfile

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"no gates file at {p}")
    try:
        data = yamlfile.load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p.name}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]  # a ReaderError has no problem
        raise UsageError(f"{p.name}:{where} not valid YAML ({problem})") from None
    try:
        return GatesConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(part) if str(part).isprintable() else repr(part) for part in err["loc"])  # keys may hold "\n"
        msg = err["msg"].removeprefix("Value error, ")
        raise UsageError(f"{p.name}: {loc + ': ' if loc else ''}{msg}"
                         + (f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(
                             err["input"], (dict, list)) else "")) from None


def run_gates(config: GatesConfig, machine: str | None = None) -> list[GateResult]:
    """Evaluate every gate; results in config order (parity first, then ratios, then budgets)."""
    machine = machine or config.machine or os.environ.get("SYNCOPT_MACHINE")
    results = [_parity_gate(g, config.tolerances) for g in config.parity]
    if config.speed is not None:
        results += _speed_gates(config.speed, machine)
    return results


def _parity_gate(gate: ParityGate, tolerances: dict[str, Tolerance]) -> GateResult:
    from syncopt.parity import check_parity

    name = gate.name or f"parity {Path(gate.artifact).name}"
    start = time.perf_counter()
    try:
        report = check_parity(gate.artifact, runtime=gate.runtime, synth_clips=gate.clips, tolerances=tolerances)
    except SyncoptError as exc:
        return GateResult(kind="parity", name=name, status="failed", message=str(exc),
                          seconds=time.perf_counter() - start)
    tol = ", ".join(f"{k} {v:g}" for k, v in report.tolerance.model_dump().items() if v is not None)
    worst_cos = min((o.min_cosine for o in report.outputs), default=None)
    return GateResult(kind="parity", name=name, status="passed" if report.passed else "failed", value=worst_cos,
                      threshold=f"{report.precision}: {tol}",
                      message="; ".join(report.failures) or report.note or report.decisions,
                      seconds=time.perf_counter() - start)


def _speed_gates(speed: SpeedGates, machine: str | None) -> list[GateResult]:
    from syncopt.core.timing import interleaved_times
    from syncopt.deploy.bench import default_runtime, prepare_session, resolve_target

    start = time.perf_counter()
    with temp_dir("gate") as tmp:
        sessions, feeds, frames = {}, {}, {}
        for key, c in speed.contenders.items():
            target = resolve_target(c.target, c.preset)
            t_len = speed.frames or target.spec.standard_frames
            prepared = prepare_session(target, c.runtime or default_runtime(target), t_len, speed.threads, Path(tmp))
            frames[key] = prepared.frames or t_len
            sessions[key] = prepared.session
            feeds[key] = {k: v.numpy() for k, v in target.spec.example_inputs(T=frames[key], batch=speed.batch).items()}
        calls = {k: functools.partial(sessions[k].run, feeds[k]) for k in sessions}
        times = interleaved_times(calls, speed.rounds, speed.warmup)
    elapsed = time.perf_counter() - start
    rate = {k: frames[k] * speed.batch / np.asarray(v) for k, v in times.items()}  # frames per second, per round
    results = []
    for g in speed.ratios:
        ratio = float(np.median(rate[g.faster] / rate[g.slower]))
        results.append(GateResult(
            kind="ratio", name=g.name or f"{g.faster} vs {g.slower}", value=ratio, threshold=f">= {g.at_least:g}x",
            status="passed" if ratio >= g.at_least else "failed", seconds=elapsed,
            message=f"{g.faster} {np.median(times[g.faster]) * 1000:.1f} ms (T={frames[g.faster]}), "
                    f"{g.slower} {np.median(times[g.slower]) * 1000:.1f} ms (T={frames[g.slower]}); "
                    f"median of {speed.rounds} interleaved rounds"))
    for b in speed.budgets:
        ms = float(np.median(times[b.contender])) * 1000
        name = f"{b.contender} budget on {b.machine}"
        if machine != b.machine:
            results.append(GateResult(kind="budget", name=name, status="skipped", value=ms,
                                      threshold=f"<= {b.max_ms:g} ms",
                                      message=f"this machine is {machine or 'unnamed'}, not {b.machine}"))
            continue
        results.append(GateResult(kind="budget", name=name, status="passed" if ms <= b.max_ms else "failed", value=ms,
                                  threshold=f"<= {b.max_ms:g} ms", seconds=elapsed,
                                  message=f"median of {speed.rounds} rounds at T={frames[b.contender]}"))
    return results


def write_junit(results: list[GateResult], path: str | os.PathLike) -> None:
    """JUnit XML: one testcase per gate, classname = its kind; failures and skips with their message."""
    suite = ET.Element("testsuite", name="syncopt gate", tests=str(len(results)),
                       failures=str(sum(r.status == "failed" for r in results)),
                       skipped=str(sum(r.status == "skipped" for r in results)),
                       time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"syncopt.deploy.gate.{r.kind}", name=r.name, time=f"{r.seconds:.3f}")
        detail = f"value {r.value:.4g}, required {r.threshold}: {r.message}" if r.value is not None else r.message
        if r.status == "failed":
            ET.SubElement(case, "failure", message=detail, type=r.kind).text = detail
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.message)
        else:
            ET.SubElement(case, "system-out").text = detail
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    with atomic_path(path) as tmp:
        tree.write(tmp, encoding="utf-8", xml_declaration=True)


