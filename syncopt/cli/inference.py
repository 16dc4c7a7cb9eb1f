"""``syncopt sync``, ``calibrate`` and ``stream``: offsets of videos."""

from __future__ import annotations

from typing import Annotated

import typer

from syncopt.cli.app import app, app_state
from syncopt.cli.output import print_sync, to_json
from syncopt.core import bounds
from syncopt.core.atomic import OUTPUT_FILE


@app.command("sync")
def sync_cmd(
    videos: Annotated[list[str], typer.Argument(help="Video files (any format FFmpeg reads); several allowed.")],
    model: Annotated[str | None, typer.Option(help="Registered model name (default: fcn_lips, the face-mesh lip "
                                                   "model trained on real video).")] = None,
    preset: Annotated[str | None, typer.Option(help="Model preset (default: the shipped model's, else tiny).")] = None,
    weights: Annotated[str | None, typer.Option(help="Weights file or run directory (default: the weights shipped "
                                                     "for the model).")] = None,
    crop: Annotated[str, typer.Option(help="'detect': find and track faces; 'full': frames are already face crops.")] = "detect",
    chunk: Annotated[int, typer.Option(parser=bounds.CHUNK, help="Frames per inference chunk (bounds model memory on long videos).")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON (a list, one entry per video).")] = False,
    plot: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Write a PNG of offset scores and the per-frame timeline "
                                                  "(with several videos, the video's name is appended).")] = None,
    render: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Write an annotated video (.mp4/.mkv/.mov/.avi): track boxes, "
                                                    "speaking state and offsets (name appended with several videos).")] = None,
    calibration: Annotated[str | None, typer.Option(help="Temperatures from syncopt calibrate (default: the one "
                                                         "beside the weights or in the run directory, if any).")] = None,
) -> None:
    """Measure each video's audio-video offset per face track, and which frames are out of sync.

    Offsets are in frames at 25 fps (and ms); positive means the audio leads the video. Each
    track's offset probability (calibrated with a calibration file) below its threshold marks
    the track uncertain.

    Example: syncopt sync clip.mp4 --crop full --json --plot clip.png
    """
    from syncopt.inference.meshes import EarlyMeshes

    # the default model reads face meshes: track the first video's while torch and the model load
    early = EarlyMeshes(videos[0]) if model is None and weights is None and crop == "detect" else None
    from syncopt.inference.sync import SyncFailure, sync_videos
    from syncopt.models.sources import resolve

    source = resolve(model, preset, weights, shipped=True)
    results, failed = [], []
    for res in sync_videos(videos, source.build(), str(source.weights), source.synthetic, crop, chunk, calibration,
                           plot, render, keep_going=len(videos) > 1 and not app_state.debug, early=early):
        if isinstance(res, SyncFailure):  # one bad file is reported and the batch goes on
            failed.append(res.error)
            results.append({"video": res.video, "error": str(res.error), "exit_code": res.error.exit_code})
            typer.echo(f"error: {res.error}", err=True)
            continue
        results.append(res)
        if not as_json:
            print_sync(res)
    if as_json:
        typer.echo(to_json([r if isinstance(r, dict) else r.model_dump(mode="json") for r in results]))
    if failed:  # the first failure's class and exit code
        raise type(failed[0])(f"{len(failed)} of {len(videos)} videos failed")


@app.command("calibrate")
def calibrate_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name, or a run directory from syncopt train.")],
    weights: Annotated[str | None, typer.Option(help="Weights file (default: the run directory's, or shipped weights).")] = None,
    preset: Annotated[str, typer.Option(help="Preset of MODEL when it is a name.")] = "tiny",
    clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Synthetic clips to fit on (validation split) and to measure on "
                                            "(held-out test split).")] = 200,
    frames: Annotated[int, typer.Option(parser=bounds.FRAMES, help="Frames per clip (25 fps).")] = 50,
    uncertain_below: Annotated[float | None, typer.Option(parser=bounds.PROBABILITY, help="Flag sync tracks whose calibrated offset "
                                                               "probability is below this (default: the package's, "
                                                               "chosen on real development clips: docs/real_video.md).")] = None,
    out: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Calibration JSON to write (default: calibration.json in the run "
                                                 "directory, <weights>.calibration.json beside other weights, "
                                                 "./calibration.json for shipped weights).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the calibration as JSON.")] = False,
) -> None:
    """Temperature scaling (Guo et al. 2017) of the in-sync and offset probabilities, fit on the
    synthetic validation split; expected calibration error (15 bins) before and after on the
    held-out test split. `syncopt sync` applies the file with --calibration, or by itself when it
    sits in the run directory.

    Example: syncopt calibrate runs/fcn_tiny --clips 200
    """
    from syncopt.inference.calibration import (
        UNCERTAIN_BELOW,
        calibrate_model,
        default_path,
        save_calibration,
    )
    from syncopt.models.sources import resolve

    source = resolve(model, preset, weights, shipped=True)
    net, used, synthetic = source.build(), str(source.weights), source.synthetic
    result = calibrate_model(net, used, clips=clips, frames=frames,
                             uncertain_below=UNCERTAIN_BELOW if uncertain_below is None else uncertain_below)
    path = save_calibration(result, out or default_path(used, synthetic))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    typer.echo(f"{result.model}/{result.preset}: in-sync T={result.sync_temperature:.3f}, offset "
               f"T={result.offset_temperature:.3f}; held-out ECE in-sync {result.sync_ece.before:.4f} -> "
               f"{result.sync_ece.after:.4f}, offset {result.offset_ece.before:.4f} -> {result.offset_ece.after:.4f} "
               f"({result.test_clips} test clips); wrote {path}")


@app.command("stream")
def stream_cmd(
    source: Annotated[str, typer.Argument(help="Video file, or a live source FFmpeg opens (URL, or a device with --format).")],
    model: Annotated[str, typer.Option(help="A causal model (fcn_causal), a run directory of one, or its exported "
                                            "streaming step (.onnx/.tflite from syncopt export --stream-chunk).")] = "fcn_causal",
    preset: Annotated[str, typer.Option(help="Model preset.")] = "tiny",
    weights: Annotated[str | None, typer.Option(help="Weights file or run directory (default: shipped synthetic-data weights).")] = None,
    chunk_ms: Annotated[float, typer.Option(parser=bounds.MILLISECONDS, help="Read and process this much media per step.")] = 200.0,
    crop: Annotated[str, typer.Option(help="'detect': follow the largest face; 'full': frames are face crops.")] = "detect",
    window: Annotated[int, typer.Option(parser=bounds.WINDOW, help="Frames the running offset averages over.")] = 50,
    tolerance: Annotated[int, typer.Option(parser=bounds.OFFSET_FRAMES, help="|offset| at or below this many frames counts as in sync.")] = 1,
    input_format: Annotated[str | None, typer.Option("--format", help="FFmpeg input format for devices, e.g. v4l2.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line per frame.")] = False,
) -> None:
    """Follow a video's audio-video offset in real time, chunk by chunk, with a causal model.

    Prints the running offset and in-sync state after each chunk (or every frame with --json).
    Latency per frame: the model's look-ahead (80 ms for fcn_causal), 15 ms of MFCC window and
    the chunk.

    An exported step runs in its runtime (ONNX Runtime, TFLite) in chunks of its fixed length,
    so the on-device model can be checked to stream the same.

    Examples:
      syncopt stream clip.mp4 --chunk-ms 200 --crop full --json
      syncopt export fcn_causal --format tflite --stream-chunk 5 --out artifacts/
      syncopt stream clip.mp4 --model artifacts/fcn_causal_stream5_tiny_fp32_T5.tflite
    """
    from syncopt.inference.streaming import stream_offsets
    from syncopt.models.sources import resolve

    resolved = resolve(model, preset, weights, shipped=True)
    if resolved.artifact is not None:  # an exported streaming step, in its runtime
        from syncopt.runtimes import load

        net = load(resolved.artifact)
    else:
        net = resolved.build()
    for i, results in enumerate(stream_offsets(source, net, chunk_ms, crop, window, tolerance, input_format)):
        if i == 0 and resolved.synthetic and not as_json:  # after the source opened: a bad one gives only its error
            typer.echo("note: synthetic-data weights shipped with syncopt (not trained on real video)", err=True)
        if as_json:
            for r in results:
                typer.echo(r.model_dump_json())
        elif results:
            r = results[-1]
            typer.echo(f"t={r.time_s:7.2f} s  offset {r.offset:+3d} frames ({r.offset_ms:+5.0f} ms)  "
                       f"confidence {r.confidence:5.2f}  sync prob {r.sync_prob:.2f}  "
                       f"{'in sync' if r.in_sync else 'OUT OF SYNC'}")

