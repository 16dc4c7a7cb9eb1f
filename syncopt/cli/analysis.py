"""``syncopt explain`` and ``robustness``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from syncopt.cli.app import app
from syncopt.cli.output import print_robustness
from syncopt.core import bounds
from syncopt.core.atomic import OUTPUT_FILE, OUTPUT_FOLDER


@app.command("explain")
def explain_cmd(
    video: Annotated[str, typer.Argument(help="Video file (any format FFmpeg reads).")],
    out: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Folder for the PNGs, saliency arrays and index.json.")],
    model: Annotated[str, typer.Option(help="Registered model name (a 3-D convolutional video tower: fcn, fcn_attn).")] = "fcn_attn",
    preset: Annotated[str, typer.Option(help="Model preset.")] = "tiny",
    weights: Annotated[str | None, typer.Option(help="Weights file or run directory (default: shipped synthetic-data weights).")] = None,
    crop: Annotated[str, typer.Option(help="'detect': find and track faces; 'full': frames are already face crops.")] = "detect",
    frames: Annotated[int, typer.Option(parser=bounds.FRAMES, help="Explain each track's first this many frames.")] = 250,
    as_json: Annotated[bool, typer.Option("--json", help="Print index.json's content.")] = False,
) -> None:
    """Grad-CAM saliency of the decided offset's score over each face crop, and (fcn_attn) the
    local attention maps, as PNG grids over frames; OUT/index.json lists them.

    Example: syncopt explain clip.mp4 --out explain/ --crop full
    """
    from syncopt.analysis.explain import explain_video
    from syncopt.models.sources import resolve

    source = resolve(model, preset, weights, shipped=True)
    net, used, synthetic = source.build(), str(source.weights), source.synthetic
    result = explain_video(video, net, out, used, synthetic, crop=crop, max_frames=frames)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    for t in result.tracks:
        files = ", ".join(f for f in (t.gradcam_png, t.gradient_png, t.attention_png) if f)
        typer.echo(f"track {t.track}: offset {t.offset:+d} (score {t.score:.2f}) over {t.frames} frames: {files}")
    typer.echo(f"wrote {Path(out) / 'index.json'}")


@app.command("robustness")
def robustness_cmd(
    targets: Annotated[list[str], typer.Argument(help="Model names (shipped weights), NAME=WEIGHTS, run directories "
                                                       "or artifact files (.onnx fp32/INT8, .tflite, or their "
                                                       "manifests), compared side by side.")],
    preset: Annotated[str, typer.Option(help="Preset of model names.")] = "tiny",
    clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Synthetic test clips per condition.")] = 20,
    frames: Annotated[int, typer.Option(parser=bounds.FRAMES, help="Frames per clip (an artifact fixed at T needs T here).")] = 75,
    corruptions: Annotated[str | None, typer.Option(help="Comma-separated subset of noise, codec, resolution, blur, "
                                                         "occlusion, frame_drop, fps (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    out: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Also write the JSON report here.")] = None,
    plot: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Write a PNG of accuracy against severity.")] = None,
) -> None:
    """Offset accuracy under audio noise, codec compression, low resolution, blur, mouth occlusion,
    frame drops and low frame rates, for several models or artifacts on the same clips.

    Example: syncopt robustness fcn fcn_causal artifacts/int8/fcn_causal_tiny_int8.onnx --clips 10 --plot robustness.png
    """
    from syncopt.analysis.robustness import run_robustness, write_report

    report = run_robustness(targets, clips=clips, frames=frames, preset=preset,
                            corruptions=corruptions.split(",") if corruptions else None,
                            progress=None if as_json else (lambda line: typer.echo(line, err=True)))
    if out:
        write_report(report, out)
    if plot:
        from syncopt.core.plots import plot_robustness

        plot_robustness(report, plot)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    print_robustness(report)

