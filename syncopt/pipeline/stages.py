"""What each recipe stage does: calls the library's stage function and sums up its numbers.

Each function takes the stage's section of the recipe and a :class:`StageContext` (its folder,
and how references resolve to paths) and returns an :class:`Outcome`: the artifacts it made
(reference key -> file) and rows for the run's summary table. A stage whose checks fail (parity
breached, a gate failed) returns the error with its rows, so the summary still shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from syncopt.compress.common import ModelStats
from syncopt.core.atomic import write_json
from syncopt.core.errors import GateBreach, ParityError, SyncoptError
from syncopt.deploy.gate import GatesConfig
from syncopt.pipeline.recipe import (
    BenchStage,
    BundleStage,
    DistillStage,
    ExportStage,
    ParityStage,
    PruneStage,
    QuantizeStage,
    Recipe,
    TrainStage,
)


class SummaryRow(BaseModel):
    """One line of the run's summary: a model, an artifact, a benchmark cell or a gate."""

    stage: str
    item: str
    runtime: str | None = None
    accuracy: float | None = None  # 15-frame clip offset accuracy on synthetic clips
    macs: int | None = None  # batch 1, the spec's standard clip length
    size_mb: float | None = None
    latency_ms: float | None = None  # median, batch 1
    note: str = ""


@dataclass
class StageContext:
    recipe: Recipe
    name: str
    folder: Path  # RUNDIR/<stage>, absolute
    resolve: Callable[[str], str]  # reference or path -> path to pass to the library


@dataclass
class Outcome:
    artifacts: dict[str, str] = field(default_factory=dict)  # reference key -> absolute path
    rows: list[SummaryRow] = field(default_factory=list)
    error: SyncoptError | None = None


def _model_row(stage: str, stats: ModelStats, note: str, weights: Path) -> SummaryRow:
    return SummaryRow(stage=stage, item=f"{stats.name}/{stats.preset}", runtime="torch",
                      accuracy=stats.offset_accuracy, macs=stats.macs, size_mb=weights.stat().st_size / 1e6, note=note)


def _model_dir(ctx: StageContext) -> str:
    return ctx.resolve(ctx.recipe.model_before(ctx.name))


def run_train(cfg: TrainStage, ctx: StageContext) -> Outcome:
    from syncopt.compress.common import model_stats
    from syncopt.models.sources import resolve
    from syncopt.training.train import TrainConfig, train

    report = train(TrainConfig.model_validate(cfg.model_dump()), ctx.folder)
    stats = model_stats(resolve(ctx.folder).build(), report=report.history[-1].val)
    return Outcome(rows=[_model_row("train", stats, f"{report.epochs_done} epochs", Path(report.weights))])


def run_distill(cfg: DistillStage, ctx: StageContext) -> Outcome:
    from syncopt.compress.distill import DistillConfig, distill

    given = {"teacher_weights": ctx.resolve("train")} if ctx.recipe.stages.train is not None else {}
    config = DistillConfig.model_validate(cfg.model_dump() | given)
    report = distill(config, ctx.folder)
    note = f"from {report.teacher.name}: MACs x{report.macs_ratio:.3f}, size x{report.size_ratio:.3f}"
    return Outcome(rows=[_model_row("distill", report.student, note, Path(report.weights))])


def run_prune(cfg: PruneStage, ctx: StageContext) -> Outcome:
    from syncopt.compress.prune import PruneConfig, prune
    from syncopt.models.sources import resolve

    source = _model_dir(ctx)
    model = resolve(source).name
    report = prune(PruneConfig.model_validate(cfg.model_dump() | {"model": model}), ctx.folder, source=source)
    note = f"MACs x{report.macs_ratio:.3f}, params x{report.params_ratio:.3f}"
    return Outcome(rows=[_model_row("prune", report.pruned, note, Path(report.weights))])


def run_quantize(cfg: QuantizeStage, ctx: StageContext) -> Outcome:
    from syncopt.compress.quantize import METHODS, QuantizeConfig, quantize

    report = quantize(_model_dir(ctx), QuantizeConfig.model_validate(cfg.model_dump()), ctx.folder)
    runtime = METHODS[cfg.method].runtime
    row = SummaryRow(stage="quantize", item=Path(report.artifact).name, runtime=runtime,
                     accuracy=report.int8_accuracy, size_mb=report.int8_bytes / 1e6, latency_ms=report.int8_latency_ms,
                     note=f"fp32 accuracy {report.fp32_accuracy:.3f}, agreement {report.offset_agreement:.1%}, "
                          f"{'within' if report.within_tolerance else 'OUTSIDE'} tolerance")
    return Outcome(artifacts={"": report.artifact}, rows=[row])


def run_export(cfg: ExportStage, ctx: StageContext) -> Outcome:
    from syncopt.core.formats import FORMATS
    from syncopt.export import export
    from syncopt.models.sources import resolve

    net = resolve(_model_dir(ctx)).build()
    out = Outcome()
    for fmt in cfg.formats:
        for precision in cfg.precisions:
            art = export(net, fmt, ctx.folder, precision, **FORMATS[fmt].export_options(cfg.frames))
            out.artifacts[f"{fmt}:{precision}"] = str(art.path)
            out.rows.append(SummaryRow(stage="export", item=art.path.name, size_mb=_mb(art.path),
                                       note=f"{fmt} {precision}" + (f", T={art.frames}" if art.frames else "")))
    return out


def run_parity(cfg: ParityStage, ctx: StageContext) -> Outcome:
    from syncopt.parity import check_parity

    refs = cfg.artifacts if cfg.artifacts is not None else ctx.recipe.artifact_refs("parity")
    reports = [check_parity(ctx.resolve(ref), runtime=cfg.runtime, frames=tuple(cfg.random_lengths),
                            synth_clips=cfg.clips, tolerances=cfg.tolerances) for ref in refs]
    write_json(ctx.folder / "parity.json", {"reports": [r.model_dump(mode="json") | {"passed": r.passed}
                                                        for r in reports]})
    out = Outcome()
    for ref, r in zip(refs, reports):
        agree = "" if r.decision_agreement is None else f", decisions agree {r.decision_agreement:.1%}"
        detail = (f"max abs {max(o.max_abs for o in r.outputs):.1e}, min cosine "
                  f"{min(o.min_cosine for o in r.outputs):.4f}{agree}") if r.outputs else r.note
        out.rows.append(SummaryRow(stage="parity", item=Path(r.artifact).name, runtime=r.runtime,
                                   note=("passed: " + detail) if r.passed else "FAILED: " + "; ".join(r.failures)))
    failed = [f"{Path(r.artifact).name}: {'; '.join(r.failures)}" for r in reports if not r.passed]
    if failed:
        out.error = ParityError("parity breached — " + " | ".join(failed))
    return out


def run_bench(cfg: BenchStage, ctx: StageContext) -> Outcome:
    from syncopt.core.log import status
    from syncopt.deploy.bench import bench

    refs = cfg.targets
    if refs is None:
        model = ctx.recipe.model_before("bench")
        refs = ([model] if model else []) + ctx.recipe.artifact_refs("bench")
    paths = {ref: ctx.resolve(ref) for ref in refs}
    report = bench(list(paths.values()), runtimes=cfg.runtimes, batches=tuple(cfg.batches),
                   frames=tuple(cfg.frames) if cfg.frames else None, threads=cfg.threads, preset=ctx.recipe.preset,
                   warmup=cfg.warmup, repeats=cfg.repeats, max_seconds=cfg.max_seconds, progress=status)
    write_json(ctx.folder / "bench.json", report.model_dump(mode="json"))
    label = {path if not Path(path).is_file() else Path(path).name: ref for ref, path in paths.items()}
    rows = [SummaryRow(stage="bench", item=f"{label.get(c.target, c.target)} B{c.batch} T{c.frames}",
                       runtime=c.runtime, macs=c.macs, size_mb=c.size_mb, latency_ms=c.latency_ms_p50,
                       note=f"{c.format} {c.precision}" if c.status == "ok" else f"{c.status}: {c.reason}")
            for c in report.cells]
    return Outcome(rows=rows)


def run_bundle(cfg: BundleStage, ctx: StageContext) -> Outcome:
    from syncopt.deploy.bundle import make_bundle, verify_bundle

    source = cfg.source or ctx.recipe.model_before("bundle")
    path = make_bundle(ctx.resolve(source), cfg.target, ctx.folder / f"{cfg.target}_bundle.zip", frames=cfg.frames,
                       precisions=tuple(cfg.precisions), parity_clips=cfg.clips)
    report = verify_bundle(path)
    row = SummaryRow(stage="bundle", item=path.name, size_mb=_mb(path),
                     note=f"verified: {report.files_checked} checksums; {'; '.join(report.runs)}")
    return Outcome(artifacts={"": str(path)}, rows=[row])


def run_gate(cfg: GatesConfig, ctx: StageContext) -> Outcome:
    from syncopt.deploy import gate

    config = cfg.model_copy(deep=True)
    for g in config.parity:
        g.name = g.name or f"parity {g.artifact}"
        g.artifact = ctx.resolve(g.artifact)
    for c in (config.speed.contenders.values() if config.speed is not None else ()):
        c.target = ctx.resolve(c.target)
    results = gate.run_gates(config)
    gate.write_junit(results, ctx.folder / "report.xml")
    write_json(ctx.folder / "results.json", {"gates": [r.model_dump() for r in results]})
    rows = [SummaryRow(stage="gate", item=r.name, note=f"{r.status}: "
                       + (f"{r.value:.4g} (required {r.threshold}); " if r.value is not None else "") + r.message)
            for r in results]
    failed = [r.name for r in results if r.status == "failed"]
    error = GateBreach(f"{len(failed)} of {len(results)} gates failed: {', '.join(failed)}") if failed else None
    return Outcome(rows=rows, error=error)


def _mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6
