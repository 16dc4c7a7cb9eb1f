"""How the command line prints: strict JSON, atomic text files, result tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from syncopt.deploy.bench import BenchReport
    from syncopt.deploy.bench_pipeline import PipelineReport
    from syncopt.deploy.gate import GateResult
    from syncopt.pipeline.runner import RunReport


def to_json(value: Any) -> str:
    """Strict JSON of models, lists and dicts: a NaN or inf is ``null`` (``json.dumps`` writes bare NaN)."""
    import pydantic_core

    return pydantic_core.to_json(value, indent=2, inf_nan_mode="null").decode()


def write_text(path: str, text: str) -> None:
    from syncopt.core.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)


def print_sync(res) -> None:
    note = " — synthetic-data weights shipped with syncopt (not trained on real video)" if res.synthetic_weights else ""
    typer.echo(f"{res.video}: {res.frames} frames ({res.duration_s:.2f} s), {res.model}/{res.preset}{note}")
    if res.trained_on:
        typer.echo(f"  weights trained on: {res.trained_on}")
    for line in res.media_notes:
        typer.echo(f"  note: {line}")
    for t in res.tracks:
        typer.echo(f"  track {t.track} frames {t.start_frame}-{t.start_frame + t.num_frames - 1}: "
                   f"AV offset {t.offset_frames:+d} frames ({t.offset_ms:+.0f} ms), confidence {t.confidence:.3f}"
                   + (f", offset probability {t.offset_probability:.2f}{' (calibrated)' if res.calibrated else ''}"
                      if t.offset_probability is not None else "")
                   + f"{'  [UNCERTAIN]' if t.uncertain else ''}{'  [speaking]' if t.speaking else ''}")
        if t.inconsistency is not None and t.inconsistency.segments:
            spans = ", ".join(f"{g.start_s:.2f}-{g.end_s:.2f} s ({g.offset:+d})" for g in t.inconsistency.segments)
            typer.echo(f"    inconsistent: {spans}; score {t.inconsistency.score:.2f}")
    if res.speakers is not None and len(res.tracks) > 1:
        turns = ", ".join(f"#{u.track} {u.start_s:.2f}-{u.end_s:.2f} s" for u in res.speakers.turns) or "none"
        typer.echo(f"  speaker turns: {turns}")


def print_bench(report: BenchReport) -> None:
    """A rich table, one row per cell; reasons and notes are numbered footnotes below it."""
    from rich.console import Console
    from rich.table import Table

    m = report.machine
    table = Table(title=f"syncopt bench — {m.get('cpu')}, {m.get('cores')} cores, threads "
                        f"{report.threads or 'default'}, warm-up {report.warmup}",
                  caption=f"latency per pass; memory: {report.memory_method}")
    cols = ("model", "format", "runtime", "B", "T", "p50/p90/p99 ms", "clips/s", "video s/s", "peak MB", "size MB",
            "GMACs", "GFLOP/s", "")
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "format", "runtime") else "right")

    def f(x: float | None, digits: int = 1) -> str:
        return "" if x is None else f"{x:.{digits}f}"

    notes: list[str] = []
    for c in report.cells:
        text = c.reason or c.note
        if text and text not in notes:
            notes.append(text)
        mark = f"[{notes.index(text) + 1}]" if text else ""
        if c.status != "ok":
            colour = "yellow" if c.status == "skipped" else "red"
            table.add_row(f"{c.model}/{c.preset}", f"{c.format} {c.precision}", c.runtime, str(c.batch), str(c.frames),
                          f"[{colour}]{c.status}[/{colour}]", *[""] * 6, mark)
            continue
        table.add_row(f"{c.model}/{c.preset}", f"{c.format} {c.precision}", c.runtime, str(c.batch), str(c.frames),
                      f"{c.latency_ms_p50:.1f}/{c.latency_ms_p90:.1f}/{c.latency_ms_p99:.1f}", f(c.clips_per_s),
                      f(c.video_s_per_s), f(c.peak_mem_mb), f(c.size_mb, 2),
                      f(None if c.macs is None else c.macs / 1e9, 3), f(c.gflops), mark)
    console = Console(width=max(Console().width, 160))  # wide enough for every column when piped
    console.print(table)
    for i, text in enumerate(notes, start=1):
        console.print(f"[{i}] {text}", highlight=False, markup=False)


def print_pipeline(report: PipelineReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{Path(report.video).name}: {report.frames} frames ({report.duration_s:.1f} s), "
                        f"{report.model}/{report.preset}, crop {report.crop}, median of {report.repeats}",
                  caption=report.note)
    for col in ("stage", "ms (median)", "share"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in report.stages:
        table.add_row(s.stage, f"{s.ms_p50:.1f}", f"{s.share:.0%}")
    table.add_row("[bold]total[/bold]", f"[bold]{report.total_ms:.1f}[/bold]",
                  f"{report.realtime_factor:.1f}× real time")
    Console(width=max(Console().width, 100)).print(table)


def print_gates(results: list[GateResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="syncopt gate")
    for col in ("gate", "kind", "value", "required", "verdict", "detail"):
        table.add_column(col, justify="right" if col == "value" else "left")
    colour = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for r in results:
        table.add_row(r.name, r.kind, "" if r.value is None else f"{r.value:.4g}", r.threshold,
                      f"[{colour[r.status]}]{r.status}[/{colour[r.status]}]", r.message)
    Console(width=max(Console().width, 140)).print(table)


def print_run(report: RunReport) -> None:
    """The run's summary as a rich table: accuracy, MACs, size and latency per stage and runtime."""
    from rich.console import Console
    from rich.table import Table

    from syncopt.pipeline.stages import SummaryRow

    table = Table(title=f"syncopt run {Path(report.recipe).name} -> {report.run_dir} "
                        f"({report.wall_time_s:.0f} s)")
    for col in ("stage", "item", "runtime", "acc@15", "MMACs", "size MB", "p50 ms", "detail"):
        table.add_column(col, justify="right" if col in ("acc@15", "MMACs", "size MB", "p50 ms") else "left")
    colour = {"ran": "green", "skipped": "cyan", "failed": "red"}
    for run in report.stages:
        label = f"{run.stage} [{colour[run.action]}]{run.action}[/{colour[run.action]}] {run.wall_time_s:.0f}s"
        for j, r in enumerate(run.rows or [SummaryRow(stage=run.stage, item="")]):
            table.add_row(label if j == 0 else "", r.item, r.runtime or "",
                          "" if r.accuracy is None else f"{r.accuracy:.3f}",
                          "" if r.macs is None else f"{r.macs / 1e6:.2f}",
                          "" if r.size_mb is None else f"{r.size_mb:.3f}",
                          "" if r.latency_ms is None else f"{r.latency_ms:.2f}", r.note)
    Console(width=max(Console().width, 160)).print(table)


def print_models(rows: list) -> None:
    """``syncopt models``: one row per model and preset."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"syncopt models (MACs at batch 1, {rows[0].frames} frames = 1 s of video)")
    for col in ("model", "preset", "params", "GMACs", "inputs (per clip)", "min T", "offsets"):
        table.add_column(col, justify="right" if col in ("params", "GMACs", "min T", "offsets") else "left")
    for r in rows:
        inputs = "  ".join(f"{k} {v.removeprefix('Bx')}" for k, v in r.inputs.items())
        table.add_row(r.name, r.preset, f"{r.params / 1e6:.2f} M", f"{r.macs / 1e9:.2f}", inputs,
                      str(r.min_frames), f"±{r.max_offset}")
    Console().print(table)


def print_robustness(report) -> None:
    """``syncopt robustness``: accuracy per corruption and severity, one column per model."""
    from rich.console import Console
    from rich.table import Table

    models = list(dict.fromkeys(c.model for c in report.cells))
    table = Table(title=f"offset accuracy ±1 frame (per-frame accuracy) on {report.clips} synthetic clips")
    for col in ("corruption", "severity", *models):
        table.add_column(col, justify="left" if col == "corruption" else "right")
    for kind, severity in dict.fromkeys((c.corruption, c.severity) for c in report.cells):
        row = {c.model: f"{c.clip_accuracy_pm1:.3f} ({c.frame_accuracy:.3f})" for c in report.cells
               if c.corruption == kind and c.severity == severity}
        unit = report.units.get(kind, "")
        table.add_row(kind, "-" if severity is None else f"{severity:g} {unit}", *(row.get(m, "") for m in models))
    Console().print(table)


def print_parity(reports: list) -> None:
    """``syncopt parity``: per artifact and output, the errors and the verdict."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="parity against torch fp32")
    for col in ("artifact", "runtime", "output", "max abs", "max rel", "min cos", "verdict"):
        table.add_column(col)
    for r in reports:
        for o in r.outputs:
            bad = any(f.startswith(o.output + ":") for f in r.failures)
            table.add_row(Path(r.artifact).name, r.runtime, o.output, f"{o.max_abs:.2e}", f"{o.max_rel:.2e}",
                          f"{o.min_cosine:.5f}", "[red]FAIL[/red]" if bad else "[green]ok[/green]")
        if r.decisions:
            table.add_row(Path(r.artifact).name, r.runtime, "offset decision", "", "", "", r.decisions)
        if r.note:
            table.add_row(Path(r.artifact).name, r.runtime, r.note, "", "", "",
                          "[red]FAIL[/red]" if r.failures else "[green]ok[/green]")
    Console().print(table)


def print_locate(reports: list) -> None:
    """``syncopt parity --locate``: per artifact, a row per node in depth order."""
    from rich.console import Console
    from rich.table import Table

    for r in reports:
        first = r.first_breach
        table = Table(title=f"{Path(r.artifact).name} ({r.runtime}) against {r.reference}: "
                            f"first breach {first.node + ' (' + first.op + ')' if first else 'none'}")
        for col in ("#", "node", "op", "matched", "max abs", "relative", "cosine", "verdict"):
            table.add_column(col)
        for n in r.nodes:
            table.add_row(str(n.index), n.node, n.op, n.matched, f"{n.max_abs:.2e}", f"{n.relative:.2e}",
                          f"{n.cosine:.5f}", "[red]BREACH[/red]" if n.breach else "[green]ok[/green]")
        Console().print(table)
