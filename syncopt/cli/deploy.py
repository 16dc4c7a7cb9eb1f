"""``syncopt bench``, ``bundle`` and ``gate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from syncopt.cli.app import app
from syncopt.cli.output import (
    print_bench,
    print_gates,
    print_pipeline,
    to_json,
    write_text,
)
from syncopt.core import bounds
from syncopt.core.atomic import OUTPUT_FILE, OUTPUT_FILE_OR_FOLDER
from syncopt.core.errors import BenchFailure, GateBreach, UsageError
from syncopt.core.formats import FORMATS


@app.command("bench")
def bench_cmd(
    targets: Annotated[list[str], typer.Argument(help="Artifacts (or manifests), run directories or model names; "
                                                      "with --pipeline sync: video files.")],
    runtimes: Annotated[str | None, typer.Option(help="Comma-separated: torch, " + ", ".join(f.runtime for f in FORMATS.values()) + " "
                                                      "(default: an artifact's own runtime, torch for a model).")] = None,
    batch: Annotated[str, typer.Option(parser=bounds.BATCH_LIST, help="Comma-separated batch sizes.")] = "1",
    frames: Annotated[str | None, typer.Option(parser=bounds.FRAMES_LIST, help="Comma-separated clip lengths in frames (default: the spec's "
                                                    "standard 25 = 1 s); TFLite artifacts run at their own T.")] = None,
    threads: Annotated[int | None, typer.Option(parser=bounds.THREADS, help="Intra-op threads for every runtime (default: its own).")] = None,
    preset: Annotated[str, typer.Option(help="Preset of model names (and of the --pipeline model).")] = "tiny",
    warmup: Annotated[int, typer.Option(parser=bounds.WARMUP, help="Untimed passes before timing.")] = 2,
    repeats: Annotated[int, typer.Option(parser=bounds.REPEATS, help="Timed passes per cell (fewer if --max-seconds passes first, at least 3).")] = 20,
    max_seconds: Annotated[float, typer.Option(parser=bounds.SECONDS, help="Time budget per cell.")] = 10.0,
    pipeline: Annotated[str | None, typer.Option(help="'sync': time the end-to-end sync path stage by stage on the videos.")] = None,
    model: Annotated[str | None, typer.Option(help="--pipeline: model name or run directory (default: sync's, the "
                                                   "shipped real-video fcn_lips).")] = None,
    weights: Annotated[str | None, typer.Option(help="--pipeline: weights (default: the model's shipped weights).")] = None,
    crop: Annotated[str, typer.Option(help="--pipeline: 'detect' faces or 'full' frames.")] = "detect",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the cells as CSV.")] = False,
    out: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Also write the JSON report to this file.")] = None,
    plot: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Write a PNG chart of latencies.")] = None,
) -> None:
    """Latency p50/p90/p99, throughput (clips/s, seconds of video per second), peak memory, file
    size, MACs and achieved GFLOP/s per target x runtime x batch x clip length.

    A model name is benchmarked in torch eager mode and exported on the fly for other runtimes.
    Runtimes whose hardware is absent (CoreML off macOS, TensorRT without CUDA) are skipped with
    the reason.

    Examples:
      syncopt bench x3d_s mobile_2d --runtimes torch,onnxruntime --batch 1,8 --frames 25,250 --plot bench.png
      syncopt bench artifacts/fcn_tiny_fp32.onnx artifacts/fcn_tiny_int8_T25.tflite --json
      syncopt bench --pipeline sync tests/fixtures/example.avi --crop full
    """
    from syncopt.deploy import bench, bench_pipeline

    if pipeline is not None:
        if pipeline != "sync":
            raise UsageError(f"unknown pipeline '{pipeline}' (known: sync)")
        if as_csv or plot:
            raise UsageError("--csv and --plot apply to model benchmarks, not --pipeline")
        reports = [bench_pipeline.bench_pipeline(v, model, preset if model else None, weights, crop,
                                                   repeats=min(repeats, 3)) for v in targets]
        text = to_json([r.model_dump(mode="json") for r in reports])
        if out:
            write_text(out, text)
        if as_json:
            typer.echo(text)
        else:
            for r in reports:
                print_pipeline(r)
        return
    report = bench.bench(targets, runtimes=[r.strip() for r in runtimes.split(",")] if runtimes else None,
                         batches=bounds.BATCH_LIST(batch), frames=bounds.FRAMES_LIST(frames) if frames else None,
                         threads=threads, preset=preset, warmup=warmup, repeats=repeats, max_seconds=max_seconds,
                         progress=None if as_json or as_csv else lambda line: typer.echo(line, err=True))
    if out:
        write_text(out, report.model_dump_json(indent=2))
    if plot:
        bench.plot(report, plot)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    elif as_csv:
        typer.echo(bench.to_csv(report), nl=False)
    else:
        print_bench(report)
    failed = [c for c in report.cells if c.status == "failed"]
    if failed:  # after the report, so the cells that ran are not lost
        raise BenchFailure(f"{len(failed)} of {len(report.cells)} cells failed; first: {failed[0].target} "
                           f"{failed[0].runtime} B={failed[0].batch} T={failed[0].frames}: {failed[0].reason}")


@app.command("bundle")
def bundle_cmd(
    args: Annotated[list[str], typer.Argument(help="A student run directory or a TFLite/CoreML artifact; or "
                                                   "'verify' followed by bundles (.zip or folders).")],
    target: Annotated[str, typer.Option(help="android (TFLite), ios (CoreML) or both.")] = "android",
    out: Annotated[str | None, typer.Option(parser=OUTPUT_FILE_OR_FOLDER, help="Bundle to write: a .zip, or a folder (default <model>_<target>_bundle.zip).")] = None,
    frames: Annotated[int | None, typer.Option(parser=bounds.FRAMES, help="TFLite clip length T (default: the spec's standard length).")] = None,
    precision: Annotated[str, typer.Option(help="Comma-separated precisions exported from a run directory.")] = "fp32,int8",
    clips: Annotated[int, typer.Option(parser=bounds.CLIPS_OR_NONE, help="Synthetic clips in each model's parity check.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="verify: print the reports as JSON.")] = False,
) -> None:
    """Pack a student for phones: TFLite and/or CoreML models, manifest.json (spec with layouts,
    preprocessing, offset range, label meaning, metrics, parity results, sha256 of every file) and
    a README with the tensor contract. `syncopt bundle verify B.zip` checks checksums and schema,
    runs every bundled TFLite model on a clip and checks parity figures; exits 12 on any failure.

    Examples:
      syncopt bundle runs/x3d_s_kd --target both --out x3d_s_bundle.zip
      syncopt bundle verify x3d_s_bundle.zip
    """
    from syncopt.deploy import bundle

    if args[0] == "verify":
        if len(args) < 2:
            raise UsageError("syncopt bundle verify needs at least one bundle")
        reports = [bundle.verify_bundle(b) for b in args[1:]]
        if as_json:
            typer.echo(to_json([r.model_dump() for r in reports]))
        for r in reports if not as_json else []:
            typer.echo(f"{r.bundle}: ok — {r.files_checked} checksums, manifest schema, parity figures present")
            for line in r.runs:
                typer.echo(f"  {line}")
        return
    if len(args) != 1:
        raise UsageError("syncopt bundle takes one run directory or artifact")
    precisions = tuple(p.strip() for p in precision.split(",") if p.strip())
    path = bundle.make_bundle(args[0], target, out or f"{Path(args[0]).stem}_{target}_bundle.zip",
                              frames=frames, precisions=precisions, parity_clips=clips)
    typer.echo(f"wrote {path}")


@app.command("gate")
def gate_cmd(
    config: Annotated[str, typer.Option(help="Gates file (YAML): parity, speed ratios, budgets.")] = "gates.yaml",
    junit: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Write a JUnit XML report here (for CI test reporters).")] = None,
    machine: Annotated[str | None, typer.Option(help="This machine's name for absolute budgets "
                                                     "(default: the file's 'machine', or $SYNCOPT_MACHINE).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """CI gates: parity per precision, speed ratios measured side by side in this run (e.g. INT8
    >= 1.8x fp32), absolute latency budgets on a named machine. Exits 13 on any breach, 2 on a
    malformed gates file (one line naming the field). See docs/ci-gates.md.

    Example: syncopt gate --config gates.yaml --junit gate-report.xml
    """
    from syncopt.deploy import gate

    results = gate.run_gates(gate.load_config(config), machine)
    if junit:
        gate.write_junit(results, junit)
    if as_json:
        typer.echo(to_json([r.model_dump() for r in results]))
    else:
        print_gates(results)
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        raise GateBreach(f"{len(failed)} of {len(results)} gates failed: {', '.join(failed)}")

