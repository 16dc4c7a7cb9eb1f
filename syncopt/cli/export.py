"""``syncopt export``, ``parity`` and ``matrix``: artifacts and their parity with torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from syncopt.cli.app import app
from syncopt.cli.output import print_locate, print_parity, to_json
from syncopt.core import bounds
from syncopt.core.atomic import OUTPUT_FILE, OUTPUT_FOLDER
from syncopt.core.errors import (
    BackendUnavailable,
    ParityError,
)
from syncopt.core.formats import FORMATS


@app.command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name, or a run directory from syncopt train.")],
    fmt: Annotated[str, typer.Option("--format", help=f"Comma-separated formats: {', '.join(FORMATS)}.")] = "onnx",
    precision: Annotated[str, typer.Option(help="Per format: " + "; ".join(f"{f.name} {', '.join(f.precisions)}" for f in FORMATS.values())
                                                + " (INT8 ONNX comes from syncopt quantize).")] = "fp32",
    preset: Annotated[str, typer.Option(help="Preset of MODEL when it is a name.")] = "tiny",
    weights: Annotated[str | None, typer.Option(help="Weights file (default: the run's, or random init for a bare name).")] = None,
    frames: Annotated[int | None, typer.Option(parser=bounds.FRAMES, help="TFLite: the fixed clip length T (default: the spec's standard length).")] = None,
    stream_chunk: Annotated[int | None, typer.Option(parser=bounds.FRAMES, help="Causal models: export one streaming step of this many "
                                                          "frames, state as explicit inputs/outputs (for syncopt stream).")] = None,
    out: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Output folder for artifacts and their manifests.")] = "artifacts",
    as_json: Annotated[bool, typer.Option("--json", help="Print the artifacts' manifests as JSON.")] = False,
) -> None:
    """Export a model to deployable artifacts, each with a manifest (spec, sha256, source weights).

    Each format exports on its own. A format whose back-end is not installed or whose hardware
    is absent (TensorRT: CUDA) is skipped with a line naming the extra or device it needs; that
    alone does not fail the command unless no format exported (exit 10). Any other failure
    (unknown format, a model the back-end cannot convert) is reported, the other formats still
    export, and the exit code is that failure's (2 usage, 11 conversion).

    Example: syncopt export fcn --preset tiny --format onnx,tflite,coreml --precision fp16 --out artifacts/
    """
    from syncopt.export import export_formats
    from syncopt.models.sources import resolve

    net = resolve(model, preset, weights).build()
    batch = export_formats(net, [f.strip() for f in fmt.split(",") if f.strip()], out, precision, frames, stream_chunk)
    artifacts = batch.artifacts
    if as_json:
        typer.echo(to_json([a.model_dump(mode="json") for a in artifacts]))
    else:
        for a in artifacts:
            typer.echo(f"exported {a.format} {a.precision}: {a.path} (sha256 {a.sha256[:12]}…)")
    for line in batch.skipped:
        typer.echo(f"skipped {line}", err=True)
    for line, _ in batch.failed:
        typer.echo(f"error: {line}", err=True)
    if batch.failed:
        raise typer.Exit(code=batch.failed[0][1].exit_code)
    if not artifacts:
        raise typer.Exit(code=BackendUnavailable.exit_code)


@app.command("parity")
def parity_cmd(
    artifacts: Annotated[list[str], typer.Argument(help="Artifact files (or their .json manifests).")],
    runtime: Annotated[str | None, typer.Option(help="Runtime to run the artifact in (default: the format's own).")] = None,
    clips: Annotated[int, typer.Option(parser=bounds.CLIPS_OR_NONE, help="Synthetic test clips compared besides the random inputs.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
    locate: Annotated[bool, typer.Option("--locate", help="Compare every intermediate tensor (ONNX, TFLite, OpenVINO) and name "
                                                          "the first node that breaks the tolerance (docs/debugging.md).")] = False,
    plot: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="--locate: PNG of the error along depth.")] = None,
    against: Annotated[str | None, typer.Option(help="--locate: an fp32 ONNX artifact as the reference instead of torch.")] = None,
    save_reference: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="--locate: also write the reference's feeds and tensors "
                                                            "as a golden .npz.")] = None,
    reference: Annotated[str | None, typer.Option(help="--locate against a golden .npz (no torch needed).")] = None,
) -> None:
    """Compare artifacts with their PyTorch source on random inputs at two lengths and on
    synthetic clips: per-output max abs/rel error, cosine, offset-decision agreement, judged by
    the precision's tolerances (fp32: abs 1e-4, rel 1e-3). Exits 9 on any breach. A TFLite
    artifact is compared at its fixed clip length; a CoreML package off macOS gets structural
    validation only (it cannot run there). --locate (implied by --reference / --save-reference)
    compares every node's output with the reference's and names the first that breaks the
    node tolerance.

    Example: syncopt parity artifacts/fcn_tiny_fp32.onnx --json
    Example: syncopt parity artifacts/int8/fcn_tiny_int8.onnx --locate --plot depth.png
    """
    if locate or reference or save_reference:
        _parity_locate(artifacts, clips, against, reference, save_reference, plot, as_json)
        return
    from syncopt.parity import check_parity

    reports = [check_parity(a, runtime=runtime, synth_clips=clips) for a in artifacts]
    if as_json:
        typer.echo(to_json([r.model_dump(mode="json") | {"passed": r.passed} for r in reports]))
    else:
        print_parity(reports)
    _raise_breaches([(r.artifact, r.failures) for r in reports if not r.passed])


def _parity_locate(artifacts: list[str], clips: int, against: str | None, reference: str | None,
                   save_reference: str | None, plot: str | None, as_json: bool) -> None:
    """``parity --locate``: a per-node table per artifact; exit 9 when the outputs breach the contract."""
    from syncopt.core.plots import plot_locate
    from syncopt.parity.locate import locate_artifacts

    reports = locate_artifacts(artifacts, clips, against, reference, save_reference)
    if plot:
        for r in reports:
            plot_locate(r, plot if len(reports) == 1 else Path(plot).with_stem(f"{Path(plot).stem}_{Path(r.artifact).stem}"))
    if as_json:
        typer.echo(to_json([r.model_dump(mode="json") | {"passed": r.passed} for r in reports]))
    else:
        print_locate(reports)
    _raise_breaches([(r.artifact, r.parity.failures) for r in reports if not r.passed])


def _raise_breaches(failed: list[tuple[str, list[str]]]) -> None:
    """Exit 9 naming every artifact that breached parity, and how (nothing when none did)."""
    if failed:
        raise ParityError("parity breached — " + " | ".join(f"{Path(a).name}: {'; '.join(f)}" for a, f in failed))


@app.command("matrix")
def matrix_cmd(
    out: Annotated[str, typer.Option(parser=OUTPUT_FILE, help="Markdown file to write.")] = "docs/conversion-matrix.md",
    models: Annotated[str | None, typer.Option(help="Comma-separated models (default: every registered one).")] = None,
    presets: Annotated[str, typer.Option(help="Comma-separated presets; 'tiny' gets parity, 'full' is export-only.")] = "tiny,full",
    formats: Annotated[str, typer.Option(help="Comma-separated formats.")] = ",".join(FORMATS),
    work: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Folder for the exported artifacts.")] = "artifacts/matrix",
    update: Annotated[bool, typer.Option(help="Keep the cells this run does not redo (other models, presets or formats) from the cells JSON of an earlier run.")] = False,
) -> None:
    """Export every model x format x precision, check parity (tiny) and write the conversion matrix.

    Example: syncopt matrix --presets tiny --out docs/conversion-matrix.md
    """
    from syncopt.deploy.matrix import run_matrix

    cells = run_matrix(out, models=models.split(",") if models else None, presets=presets.split(","),
                       formats=formats.split(","), work=work, progress=lambda line: typer.echo(line, err=True),
                       update=update)
    typer.echo(f"wrote {out}: {sum(c.status == 'passed' for c in cells)} passed, "
               f"{sum(c.status == 'exported' for c in cells)} exported, {sum(c.status == 'failed' for c in cells)} "
               f"failed, {sum(c.status == 'skipped' for c in cells)} skipped")

