"""Speed of models and artifacts per runtime, batch and clip length (the sync pipeline by stage: bench_pipeline).

Each cell runs ``warmup`` untimed passes, then timed passes until ``repeats`` are done or
``max_seconds`` have passed (at least ``min_repeats``). Latency percentiles are over those
passes; throughput divides the batch (clips/s) or the clip duration times the batch (seconds of
video per second) by the median latency.

Peak memory is the growth of the process's resident set during the cell's passes: the kernel's
high-water mark ``VmHWM`` is reset by writing ``5`` to ``/proc/self/clear_refs`` (proc(5),
Linux >= 4.0) after the session is loaded, and ``VmHWM - VmRSS`` is read after the last pass. It
covers native allocations (PyTorch, ONNX Runtime, TFLite arenas), which tracemalloc cannot see.

A registered model name (or a training run directory) is benchmarked as the torch eager model;
for any other runtime it is exported on the fly into a temporary folder. TFLite artifacts are
fixed at one clip length and batch 1 (see syncopt.export.tflite): they are benchmarked at their
own T (noted in the row) and the runtime runs batch items one by one. Runtimes whose hardware
is absent (CoreML off macOS, TensorRT without CUDA) give a skipped row with the reason.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel
from torch import nn

from syncopt.core.artifact import Artifact
from syncopt.core.atomic import temp_dir
from syncopt.core.errors import SyncoptError, UsageError
from syncopt.core.formats import FORMATS, artifact_bytes, runtime_formats
from syncopt.core.timing import (
    MEMORY_METHOD,
    machine_info,
    peak_rss_growth,
    percentiles,
    time_runs,
)
from syncopt.models.sources import Source, resolve
from syncopt.runtimes import DEFAULT_RUNTIME, Session
from syncopt.runtimes.torch_runtime import TorchSession

RUNTIME_FORMAT = runtime_formats()


class BenchCell(BaseModel):
    """One target x runtime x batch x clip length."""

    target: str
    model: str
    preset: str
    format: str
    precision: str
    runtime: str
    batch: int
    frames: int
    status: Literal["ok", "skipped", "failed"]
    reason: str = ""
    note: str = ""
    repeats: int = 0
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_mean: float | None = None
    clips_per_s: float | None = None
    video_s_per_s: float | None = None
    peak_mem_mb: float | None = None
    size_mb: float | None = None
    macs: int | None = None  # per pass, at this batch and clip length
    gflops: float | None = None  # achieved: 2 * MACs / median latency


class BenchReport(BaseModel):
    machine: dict[str, str | int | float | None]
    threads: int | None
    warmup: int
    memory_method: str = MEMORY_METHOD
    cells: list[BenchCell]


# -- targets ----------------------------------------------------------------------------------------

@dataclass
class Target:
    """What one positional argument names (:func:`syncopt.models.sources.resolve`), with its torch model
    built once and the artifacts exported from it on the fly."""

    source: Source
    _net: nn.Module | None = None
    _exports: dict[tuple[str, int | None], object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def preset(self) -> str:
        return self.source.preset

    @property
    def artifact(self) -> Artifact | None:
        return self.source.artifact

    @property
    def spec(self):
        return self.artifact.spec if self.artifact is not None else self.net().spec

    def net(self) -> nn.Module:
        """The torch model (the artifact's source with its weights; random init for a bare name)."""
        if self._net is None:
            self._net = self.source.build()
        return self._net


def resolve_target(arg: str, preset: str = "tiny") -> Target:
    """An artifact file/manifest, a run directory from ``syncopt train``, or a registered model name."""
    return Target(resolve(arg, preset))


def default_runtime(target: Target) -> str:
    """An artifact's own runtime; torch for a model."""
    return "torch" if target.artifact is None else DEFAULT_RUNTIME.get(target.artifact.format, "torch")


def _hardware_absent(runtime: str) -> str | None:
    """Why ``runtime``'s device is absent here (CoreML off macOS, TensorRT without CUDA), or None."""
    row = FORMATS.get(RUNTIME_FORMAT[runtime])
    return row.run_device() if row is not None and row.run_device else None


def _file_mb(path: Path) -> float:
    return artifact_bytes(path) / 1e6


@dataclass
class _Prepared:
    session: Session
    fmt: str
    precision: str
    size_mb: float | None
    frames: int | None  # fixed clip length of the artifact, if any
    note: str = ""


def prepare_session(target: Target, runtime: str, frames: int, threads: int | None, workdir: Path) -> _Prepared:
    """A loaded session for ``target`` in ``runtime``, exporting on the fly for a model name."""
    from syncopt.runtimes import load

    if runtime == "torch":
        net = target.net()
        if target.artifact is not None:
            size = _file_mb(target.artifact.weights_path)
        else:
            size = sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers())) / 1e6
        return _Prepared(TorchSession.of(net, threads), "torch", "fp32", size, None)
    fmt = RUNTIME_FORMAT[runtime]
    art = target.artifact
    note = ""
    if art is None:
        from syncopt.export import export

        options = FORMATS[fmt].export_options(frames)
        key = (fmt, options.get("frames"))
        if key not in target._exports:
            target._exports[key] = export(target.net(), fmt, workdir / f"{target.name}_{fmt}_{len(target._exports)}",
                                          "fp32", **options)
        art = target._exports[key]
        note = f"exported to {fmt} on the fly"
    elif art.format != fmt:
        raise UsageError(f"a {art.format} artifact does not run in {runtime}")
    session = load(art, runtime, threads=threads)
    return _Prepared(session, art.format, art.precision, _file_mb(art.path), art.frames, note)


def _macs(target: Target, frames: int, cache: dict[int, int | None]) -> int | None:
    """MACs of one clip at ``frames`` (batch 1), counted on the torch model; None if not countable."""
    if frames not in cache:
        from syncopt.models.complexity import count_macs

        try:
            net = target.net()
            cache[frames] = count_macs(net, net.spec, frames=frames)
        except Exception:  # noqa: BLE001  a model the meta-device counter cannot trace has no MAC figure
            cache[frames] = None
    return cache[frames]


def bench(targets: list[str], runtimes: list[str] | None = None, batches: tuple[int, ...] = (1,),
          frames: tuple[int, ...] | None = None, threads: int | None = None, preset: str = "tiny",
          warmup: int = 2, repeats: int = 20, min_repeats: int = 3, max_seconds: float = 10.0,
          progress: Callable[[str], None] | None = None) -> BenchReport:
    """Benchmark every target x runtime x batch x clip length; see the module docstring.

    ``runtimes`` default: the artifact's own runtime, or torch for a model. ``frames`` default:
    the spec's standard length.
    """
    from syncopt.core.errors import BackendUnavailable

    unknown = [r for r in runtimes or [] if r not in RUNTIME_FORMAT]
    if unknown:
        raise UsageError(f"unknown runtime '{unknown[0]}' (known: {', '.join(RUNTIME_FORMAT)})")
    if any(b < 1 for b in batches) or any(t < 1 for t in frames or ()):
        raise UsageError("batch sizes and frame counts must be positive")
    cells: list[BenchCell] = []
    resolved = [resolve_target(t, preset) for t in targets]
    with temp_dir("bench") as tmp:
        for target in resolved:
            spec = target.spec
            macs_cache: dict[int, int | None] = {}
            done: set[tuple[str, int]] = set()
            for runtime in runtimes or [default_runtime(target)]:
                for t_req in frames or (spec.standard_frames,):
                    base = dict(target=target.label, model=target.name, preset=target.preset, runtime=runtime,
                                format=RUNTIME_FORMAT[runtime] if target.artifact is None else target.artifact.format,
                                precision="fp32" if target.artifact is None else target.artifact.precision)
                    absent = _hardware_absent(runtime)
                    prepared, reason = None, absent
                    if absent is None:
                        try:
                            spec.check_length(t_req)
                            prepared = prepare_session(target, runtime, t_req, threads, Path(tmp))
                        except BackendUnavailable as exc:
                            reason = str(exc)
                        except SyncoptError as exc:
                            cells += [BenchCell(**base, batch=b, frames=t_req, status="failed", reason=str(exc))
                                      for b in batches]
                            continue
                    if prepared is None:
                        cells += [BenchCell(**base, batch=b, frames=t_req, status="skipped", reason=reason or "")
                                  for b in batches]
                        continue
                    t_len = prepared.frames or t_req
                    if (runtime, t_len) in done:  # a fixed-T artifact already benchmarked at its own T
                        continue
                    done.add((runtime, t_len))
                    note = "; ".join(n for n in (
                        prepared.note,
                        f"fixed at T={t_len} (requested {t_req}), batch items run one by one"
                        if prepared.frames is not None else "") if n)
                    base |= dict(format=prepared.fmt, precision=prepared.precision)
                    for b in batches:
                        if progress:
                            progress(f"bench {target.label} {runtime} B={b} T={t_len}")
                        cells.append(_run_cell(prepared, base, b, t_len, note, _macs(target, t_len, macs_cache),
                                               warmup, repeats, min_repeats, max_seconds))
    return BenchReport(machine=machine_info(), threads=threads, warmup=warmup, cells=cells)


def _run_cell(prepared: _Prepared, base: dict, batch: int, frames: int, note: str, macs1: int | None,
              warmup: int, repeats: int, min_repeats: int, max_seconds: float) -> BenchCell:
    spec = prepared.session.spec
    feeds = {k: v.numpy() for k, v in spec.example_inputs(T=frames, batch=batch).items()}
    try:
        with peak_rss_growth() as mem:
            samples = time_runs(lambda: prepared.session.run(feeds), warmup, repeats, min_repeats, max_seconds)
    except SyncoptError as exc:
        return BenchCell(**base, batch=batch, frames=frames, status="failed", reason=str(exc), note=note)
    p50, p90, p99, mean = percentiles(samples)
    macs = None if macs1 is None else macs1 * batch
    return BenchCell(
        **base, batch=batch, frames=frames, status="ok", note=note, repeats=len(samples),
        latency_ms_p50=p50, latency_ms_p90=p90, latency_ms_p99=p99, latency_ms_mean=mean,
        clips_per_s=batch / (p50 / 1000), video_s_per_s=batch * frames / spec.preprocessing.fps / (p50 / 1000),
        peak_mem_mb=mem[0], size_mb=prepared.size_mb, macs=macs,
        gflops=None if macs is None else 2 * macs / (p50 / 1000) / 1e9,
    )


# -- output ----------------------------------------------------------------------------------------

def to_csv(report: BenchReport) -> str:
    """One row per cell, the BenchCell fields as columns."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(BenchCell.model_fields))
    writer.writeheader()
    for cell in report.cells:
        writer.writerow(cell.model_dump())
    return buf.getvalue()


def plot(report: BenchReport, path: str | os.PathLike) -> None:
    """Horizontal bars of median latency (log scale) per cell that ran, p90 marked."""
    from syncopt.core.atomic import atomic_path
    from syncopt.core.plots import _pyplot

    plt = _pyplot()
    ok = [c for c in report.cells if c.status == "ok"]
    if not ok:
        raise UsageError("no benchmark cell ran; nothing to plot")
    labels = [f"{c.model} {c.format}/{c.precision} {c.runtime} B{c.batch} T{c.frames}" for c in ok]
    p50 = np.array([c.latency_ms_p50 for c in ok])
    p90 = np.array([c.latency_ms_p90 for c in ok])
    colours = {r: f"C{i}" for i, r in enumerate(dict.fromkeys(c.runtime for c in ok))}
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(ok) + 1.5))
    ax.barh(range(len(ok)), p50, color=[colours[c.runtime] for c in ok])
    ax.plot(p90, range(len(ok)), "k|", ms=10, label="p90")
    ax.set_yticks(range(len(ok)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency per pass, ms (bar: median; mark: p90)")
    ax.set_title(f"syncopt bench — {report.machine.get('cpu')}", fontsize=9)
    for i, (v, c) in enumerate(zip(p50, ok)):
        ax.text(v, i, f" {v:.1f} ms, {c.video_s_per_s:.3g}× real time", va="center", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
