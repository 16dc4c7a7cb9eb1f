"""The ``syncopt`` command line: thin typer verbs over the library's stage functions."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from syncopt import bounds
from syncopt.atomic import OUTPUT_FILE, OUTPUT_FILE_OR_FOLDER, OUTPUT_FOLDER, process_temp_dir
from syncopt.errors import (BackendUnavailable, BenchFailure, GateBreach, Interrupted, MediaError, OutputFileError,
                            ParityError, SyncoptError, UsageError)
from syncopt.formats import FORMATS

app = typer.Typer(
    name="syncopt",
    help=(
        "Audio-visual lip-sync models: reference SyncNets, distillation, pruning, INT8 and "
        "export with parity and speed gates.\n\n"
        "Errors print one line and exit non-zero; add --debug for the traceback."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from syncopt import __version__

        typer.echo(f"syncopt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """Global options (handled before any command runs)."""


@app.command("models")
def models_cmd(
    preset: Annotated[str, typer.Option(help="Preset to describe: 'full' (paper size), 'tiny' (tests/CPU) or 'all'.")] = "full",
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")] = False,
) -> None:
    """List every registered model with its parameters and MACs at the spec's standard input.

    Counts are measured by building the model on the meta device and tracing one forward
    (no weights are allocated), at batch 1 and the spec's standard clip length (25 frames = 1 s).

    Example: syncopt models --preset tiny --json
    """
    from syncopt.catalog import describe_models

    rows = describe_models(preset)
    if as_json:
        typer.echo(_json([r.model_dump() for r in rows]))
        return
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


_DEBUG = False  # `syncopt --debug`: tracebacks instead of one-line errors (set by main)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: a :class:`SyncoptError` becomes one line and its exit code, and so
    do a malformed command line (unknown command or option, bad value, missing argument: exit 2), an
    interrupt (SIGINT 130, SIGTERM 143) and results that standard output cannot take (exit 15).
    Scratch files live in a folder of this process (:func:`syncopt.atomic.process_temp_dir`),
    removed however the command ends; without --debug, back-ends' warnings are not shown."""
    global _DEBUG
    args = sys.argv[1:] if argv is None else argv
    debug = _DEBUG = "--debug" in args
    try:
        with process_temp_dir(), _console(debug):
            if sys.stdout is None:  # started with stdout closed (`>&-`): the results would be lost
                raise OutputFileError("standard output is closed: nowhere to print the results "
                                      "(redirect it to a file or /dev/null)")
            code = app(args=args, prog_name="syncopt", standalone_mode=False)
    except typer.TyperException as exc:  # typer's own command-line errors
        if message := exc.format_message():  # empty when `syncopt` alone has already printed the help
            ctx = getattr(exc, "ctx", None)
            typer.echo(f"error: {message} (see {ctx.command_path if ctx else 'syncopt'} --help)", err=True)
        sys.exit(exc.exit_code)
    except SyncoptError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        if debug:
            raise
        typer.echo("error: interrupted; nothing written under the final name", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit's code, else success


@contextlib.contextmanager
def _console(debug: bool) -> Iterator[None]:
    """While a command runs: SIGINT and SIGTERM raise :class:`Interrupted` (so every ``with`` block
    cleans up), a failed write to stdout is an :class:`OutputFileError`, and back-ends' warnings and
    log lines below ERROR (torch's UserWarnings, its ``W1203 ...`` log lines) are hidden unless ``debug``."""
    import logging
    import os
    import signal
    import threading
    import warnings

    def interrupted(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    handlers = ({s: signal.signal(s, interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
                if threading.current_thread() is threading.main_thread() else {})
    stdout, sys.stdout = sys.stdout, _Stdout(sys.stdout) if sys.stdout is not None else None
    log_floor = logging.root.manager.disable
    with warnings.catch_warnings():
        if not debug:
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and WARNING lines
        try:
            yield
        finally:
            sys.stdout = stdout
            logging.disable(log_floor)
            for s, handler in handlers.items():
                signal.signal(s, handler)


class _Stdout:
    """``sys.stdout`` while a command runs: a write that fails (a closed pipe, a full disk) raises
    :class:`OutputFileError`, so it is one line and exit 15, not click's silent exit 1 on EPIPE."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with self._errors():
            return self._stream.write(text)

    def flush(self) -> None:
        with self._errors():
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import os

        try:
            yield
        except OSError as exc:
            with contextlib.suppress(OSError, ValueError):  # what is still buffered goes nowhere, quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
            raise OutputFileError(f"cannot print the results to standard output ({exc.strerror or exc})") from exc


def _json(value: Any) -> str:
    """Strict JSON of models, lists and dicts: a NaN or inf is ``null`` (``json.dumps`` writes bare NaN)."""
    import pydantic_core

    return pydantic_core.to_json(value, indent=2, inf_nan_mode="null").decode()


@app.command("train")
def train_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. fcn, fcn_attn, i3d_wav2vec, x3d_s.")],
    data: Annotated[str, typer.Option(help="'synth' (embedded procedural talking heads), a folder of in-sync "
                                           "videos, or a manifest .csv with columns path,offset.")] = "synth",
    crop: Annotated[str, typer.Option(help="Real data: 'detect' faces, or 'full' if frames are face crops.")] = "detect",
    preset: Annotated[str, typer.Option(help="'tiny' (CPU-friendly) or 'full' (paper size).")] = "tiny",
    epochs: Annotated[int, typer.Option(parser=bounds.EPOCHS, help="Passes over the training clips.")] = 20,
    train_clips: Annotated[int, typer.Option(parser=bounds.TRAIN_CLIPS, help="Number of synthetic training clips (2 s each).")] = 1000,
    val_clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Number of synthetic validation clips.")] = 200,
    batch_size: Annotated[int, typer.Option(parser=bounds.BATCH, help="Clips per optimisation step (over all torchrun processes "
                                                 "and accumulation steps).")] = 16,
    grad_accum: Annotated[int, typer.Option(parser=bounds.GRAD_ACCUM, help="Accumulate gradients over this many micro-batches per step.")] = 1,
    amp: Annotated[bool, typer.Option(help="Mixed precision: bf16 autocast on CPU, fp16 + loss scaling on CUDA.")] = False,
    lr: Annotated[float, typer.Option(parser=bounds.LR, help="Peak learning rate of the one-cycle schedule.")] = 3e-3,
    seed: Annotated[int, typer.Option(parser=bounds.SEED, help="Seed for weights, data order and augmentation.")] = 0,
    time_budget: Annotated[float | None, typer.Option(parser=bounds.MINUTES, help="Stop after the epoch that passes this many minutes.")] = None,
    out: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Run directory (checkpoint, weights, report).")] = "runs/train",
    resume: Annotated[bool, typer.Option(help="Continue from the run directory's checkpoint if there is one.")] = True,
    video_weights: Annotated[str | None, typer.Option(help="Transfer models: pretrained video backbone checkpoint "
                                                           "in its reference layout (torchvision, pytorch-i3d, "
                                                           "pytorchvideo).")] = None,
    audio_weights: Annotated[str | None, typer.Option(help="Transfer models: pretrained audio backbone file, or a "
                                                           "local transformers from_pretrained directory.")] = None,
    unfreeze_schedule: Annotated[str | None, typer.Option(help="Epoch from which each group trains, e.g. "
                                                               "'audio=2,video=4' (head trains from 0; "
                                                               "'video=never' keeps it frozen).")] = None,
    backbone_lr_scale: Annotated[float, typer.Option(parser=bounds.LR_SCALE, help="Backbones learn at this multiple of the head's "
                                                          "rate (discriminative rates, e.g. 0.1).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final report as JSON.")] = False,
) -> None:
    """Train a dense sync model with per-frame offset cross-entropy, InfoNCE and in-sync BCE.

    Checkpoints after every epoch (atomic); rerunning the same command resumes. Writes
    OUT/model.safetensors, OUT/config.json and OUT/report.json. Runs data-parallel under
    torchrun (docs/distributed.md).

    Examples:
      syncopt train fcn --epochs 12 --out runs/fcn_tiny
      syncopt train i3d_wav2vec --preset full --video-weights rgb_imagenet.pt --audio-weights ./wav2vec2-base \
          --unfreeze-schedule audio=2,video=4 --backbone-lr-scale 0.1
    """
    from syncopt.distributed import current as current_rank
    from syncopt.train import TrainConfig, train

    config = TrainConfig(model=model, preset=preset, data=data, crop=crop, epochs=epochs, train_clips=train_clips,
                         val_clips=val_clips, batch_size=batch_size, grad_accum=grad_accum, amp=amp, lr=lr, seed=seed,
                         time_budget_min=time_budget,
                         video_weights=video_weights, audio_weights=audio_weights,
                         unfreeze_schedule=unfreeze_schedule, backbone_lr_scale=backbone_lr_scale)
    report = train(config, out, resume=resume)
    if not current_rank().main:  # under torchrun, rank 0 alone prints
        return
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    last = report.history[-1].val
    typer.echo(f"trained {model} ({preset}) for {report.epochs_done} epochs in {report.wall_time_s / 60:.1f} min: "
               f"val offset accuracy (15 frames) {last.context_accuracy[15]:.3f}, ±1 {last.context_accuracy_pm1[15]:.3f}, "
               f"per-frame {last.per_frame_accuracy:.3f}; weights {report.weights}")


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[str | None, typer.Argument(help="Registered model name, or a run directory from syncopt train "
                                                     "(with --data: default the shipped real-video model; also an "
                                                     "exported artifact, run in its runtime).")] = None,
    weights: Annotated[str | None, typer.Option(help="Weights file (default: the run directory's, or shipped weights).")] = None,
    preset: Annotated[str | None, typer.Option(help="Preset of MODEL when it is a name (default: tiny; with "
                                                    "--data and no MODEL, the shipped model's).")] = None,
    data: Annotated[str | None, typer.Option(help="Real clips instead of synthetic ones: a folder of in-sync videos, "
                                                  "or a .csv of path,offset rows (offset: the clip's own, in frames).")] = None,
    shifts: Annotated[str, typer.Option(parser=bounds.SHIFTS, help="With --data: audio shifts in frames "
                                                                    "(positive delays the audio), comma-separated.")]
    = "-10,-5,0,5,10",
    context: Annotated[str, typer.Option(help="With --data: window lengths in frames, and 'full' for whole clips.")]
    = "25,50,full",
    cache: Annotated[str | None, typer.Option(help="With --data: feature cache folder (default $SYNCOPT_CACHE or "
                                                   "~/.cache/syncopt/lips).")] = None,
    clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Number of held-out synthetic test clips.")] = 300,
    frames: Annotated[int, typer.Option(parser=bounds.FRAMES, help="Frames per test clip (25 fps).")] = 75,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot: Annotated[str | None, typer.Option(parser=OUTPUT_FILE, help="Write a PNG of accuracy against context length.")] = None,
) -> None:
    """Evaluate on the held-out synthetic test split: offset accuracy for 5..15-frame context
    (exact and ±1), per-frame accuracy, in-sync ROC-AUC, LSE-D/LSE-C, out-of-sync segment IoU.

    With --data, real clips: each clip's audio is shifted by every --shifts k frames and its
    offset decided whole and over consecutive --context windows; scored absolute (truth = the
    clip's offset - k) and shift-following (truth = the clip's median of offset + k, minus k),
    beside the model-free lip-geometry baseline.

    Examples: syncopt evaluate runs/fcn_tiny --json;
    syncopt evaluate --data clips/ --shifts -10,-5,0,5,10 --context 25,50,full --plot acc.png;
    syncopt evaluate artifacts/fcn_lips_tiny_int8.onnx --data clips.csv (an INT8 artifact in ONNX Runtime)
    """
    from syncopt.sync import load_sync_model

    if data is not None:
        from syncopt.shift_eval import evaluate_command

        report, text = evaluate_command(model, preset, weights, data, shifts, context, cache, plot)
        typer.echo(report.model_dump_json(indent=2) if as_json else text)
        return
    if model is None:
        raise UsageError("evaluate needs MODEL (or --data for real clips)")
    from syncopt.data.datasets import synth_dataset
    from syncopt.evaluate import evaluate_dataset

    net, _, _ = load_sync_model(model, preset or "tiny", weights)
    dataset = synth_dataset(net.spec, "test", clips, frames, kinds={"constant": 0.7, "drift": 0.15, "cutin": 0.15})
    report = evaluate_dataset(net, dataset)
    if plot:
        from syncopt.plots import plot_context_accuracy

        plot_context_accuracy(report, plot)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    for c in sorted(report.context_accuracy):
        typer.echo(f"context {c:2d} frames: accuracy {report.context_accuracy[c]:.3f}  ±1 {report.context_accuracy_pm1[c]:.3f}")
    typer.echo(f"per-frame accuracy {report.per_frame_accuracy:.3f} (varying clips {report.per_frame_accuracy_varying})  "
               f"in-sync AUC {report.sync_auc}  LSE-D {report.lse_d:.3f}  LSE-C {report.lse_c:.3f}  "
               f"segment IoU {report.segment_iou}")


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
    from syncopt.calibration import default_path, load_calibration
    from syncopt.sync import default_model, load_sync_model, sync_video

    net, used, synthetic = load_sync_model(*default_model(model, preset), weights)
    beside = None if synthetic else default_path(used, synthetic)
    if calibration is None and beside is not None and beside.is_file():
        calibration = str(beside)
    temperatures = load_calibration(calibration, net.spec, used) if calibration else None
    results, failed = [], []
    for video in videos:
        try:
            res = sync_video(video, net, used, synthetic, crop=crop, chunk=chunk, calibration=temperatures)
            if plot:
                from syncopt.plots import plot_sync

                target = plot if len(videos) == 1 else str(Path(plot).with_stem(f"{Path(plot).stem}_{Path(video).stem}"))
                plot_sync(res, target)
            if render:
                from syncopt.render import render_sync

                render_sync(res, render if len(videos) == 1 else
                            str(Path(render).with_stem(f"{Path(render).stem}_{Path(video).stem}")))
        except SyncoptError as exc:  # one bad file is reported and the batch goes on
            if len(videos) == 1 or _DEBUG:
                raise
            failed.append(exc)
            results.append({"video": video, "error": str(exc), "exit_code": exc.exit_code})
            typer.echo(f"error: {exc}", err=True)
            continue
        results.append(res)
        if not as_json:
            _print_sync(res)
    if as_json:
        typer.echo(_json([r if isinstance(r, dict) else r.model_dump(mode="json") for r in results]))
    if failed:  # the first failure's class and exit code
        raise type(failed[0])(f"{len(failed)} of {len(videos)} videos failed")


def _print_sync(res) -> None:
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


@app.command("calibrate")
def calibrate_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name, or a run directory from syncopt train.")],
    weights: Annotated[str | None, typer.Option(help="Weights file (default: the run directory's, or shipped weights).")] = None,
    preset: Annotated[str, typer.Option(help="Preset of MODEL when it is a name.")] = "tiny",
    clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Synthetic clips to fit on (validation split) and to measure on "
                                            "(held-out test split).")] = 200,
    frames: Annotated[int, typer.Option(parser=bounds.FRAMES, help="Frames per clip (25 fps).")] = 50,
    uncertain_below: Annotated[float, typer.Option(parser=bounds.PROBABILITY, help="Flag sync tracks whose calibrated offset probability "
                                                        "is below this.")] = 0.4,
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
    from syncopt.calibration import calibrate_model, default_path, save_calibration
    from syncopt.sync import load_sync_model

    net, used, synthetic = load_sync_model(model, preset, weights)
    result = calibrate_model(net, used, clips=clips, frames=frames, uncertain_below=uncertain_below)
    path = save_calibration(result, out or default_path(used, synthetic))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    typer.echo(f"{result.model}/{result.preset}: in-sync T={result.sync_temperature:.3f}, offset "
               f"T={result.offset_temperature:.3f}; held-out ECE in-sync {result.sync_ece.before:.4f} -> "
               f"{result.sync_ece.after:.4f}, offset {result.offset_ece.before:.4f} -> {result.offset_ece.after:.4f} "
               f"({result.test_clips} test clips); wrote {path}")


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
    from syncopt.explain import explain_video
    from syncopt.sync import load_sync_model

    net, used, synthetic = load_sync_model(model, preset, weights)
    result = explain_video(video, net, out, used, synthetic, crop=crop, max_frames=frames)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    for t in result.tracks:
        files = ", ".join(f for f in (t.gradcam_png, t.gradient_png, t.attention_png) if f)
        typer.echo(f"track {t.track}: offset {t.offset:+d} (score {t.score:.2f}) over {t.frames} frames: {files}")
    typer.echo(f"wrote {Path(out) / 'index.json'}")


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
    from syncopt.export import export
    from syncopt.formats import get_format
    from syncopt.registry import create

    if weights is None and Path(model).is_dir():
        from syncopt.sync import load_sync_model

        net, _, _ = load_sync_model(model, preset, None)
    else:
        net = create(model, preset, weights=weights)

    artifacts, failed, skipped = [], [], []
    for f in [f.strip() for f in fmt.split(",") if f.strip()]:
        try:
            if stream_chunk:
                from syncopt.streaming import export_stream

                artifacts.append(export_stream(net, f, out, stream_chunk, precision))
                continue
            artifacts.append(export(net, f, out, precision, **get_format(f).export_options(frames)))
        except BackendUnavailable as exc:
            skipped.append(f"{f}: {exc}")
        except SyncoptError as exc:
            failed.append((f"{f}: {exc}", exc.exit_code))
    if as_json:
        typer.echo(_json([a.model_dump(mode="json") for a in artifacts]))
    else:
        for a in artifacts:
            typer.echo(f"exported {a.format} {a.precision}: {a.path} (sha256 {a.sha256[:12]}…)")
    for line in skipped:
        typer.echo(f"skipped {line}", err=True)
    for line, _ in failed:
        typer.echo(f"error: {line}", err=True)
    if failed:
        raise typer.Exit(code=failed[0][1])
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
        typer.echo(_json([r.model_dump(mode="json") | {"passed": r.passed} for r in reports]))
    else:
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
    failed = [f"{Path(r.artifact).name}: {'; '.join(r.failures)}" for r in reports if not r.passed]
    if failed:
        raise ParityError("parity breached — " + " | ".join(failed))


def _parity_locate(artifacts: list[str], clips: int, against: str | None, reference: str | None,
                   save_reference: str | None, plot: str | None, as_json: bool) -> None:
    """``parity --locate``: a per-node table per artifact; exit 9 when the outputs breach the contract."""
    from syncopt.artifact import load_artifact
    from syncopt.locate import build_reference, load_reference, locate, save_reference as save
    from syncopt.plots import plot_locate

    if save_reference and (len(artifacts) != 1 or reference):
        raise UsageError("--save-reference takes one artifact and no --reference")
    golden = load_reference(reference) if reference else None
    if save_reference:
        golden = build_reference(load_artifact(artifacts[0]), against, clips)
        save(golden, save_reference)
    reports = [locate(a, golden, against, clips) for a in artifacts]
    if plot:
        for r in reports:
            plot_locate(r, plot if len(reports) == 1 else Path(plot).with_stem(f"{Path(plot).stem}_{Path(r.artifact).stem}"))
    if as_json:
        typer.echo(_json([r.model_dump(mode="json") | {"passed": r.passed} for r in reports]))
    else:
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
    failed = [f"{Path(r.artifact).name}: {'; '.join(r.parity.failures)}" for r in reports if not r.passed]
    if failed:
        raise ParityError("parity breached — " + " | ".join(failed))


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
    from syncopt.export.matrix import run_matrix

    cells = run_matrix(out, models=models.split(",") if models else None, presets=presets.split(","),
                       formats=formats.split(","), work=work, progress=lambda line: typer.echo(line, err=True),
                       update=update)
    typer.echo(f"wrote {out}: {sum(c.status == 'passed' for c in cells)} passed, "
               f"{sum(c.status == 'exported' for c in cells)} exported, {sum(c.status == 'failed' for c in cells)} "
               f"failed, {sum(c.status == 'skipped' for c in cells)} skipped")


@app.command("distill")
def distill_cmd(
    teacher: Annotated[str, typer.Option(help="Teacher model name (waveform or MFCC audio).")] = "i3d_wav2vec",
    student: Annotated[str, typer.Option(help="Student model name, e.g. x3d_s, x3d_xs, mobile_2d.")] = "x3d_s",
    teacher_weights: Annotated[str | None, typer.Option(help="Teacher weights file or run directory, or 'shipped' "
                                                             "(the package's weights for it); without it the teacher "
                                                             "is trained first (cached in OUT/teacher).")] = None,
    preset: Annotated[str, typer.Option(help="'tiny' (CPU-friendly) or 'full' (paper size), for both models.")] = "tiny",
    teacher_preset: Annotated[str | None, typer.Option(help="The teacher's preset when it differs (default: --preset).")] = None,
    data: Annotated[str, typer.Option(help="'synth', a folder of in-sync videos, or a manifest .csv (lip models: "
                                           "real video only).")] = "synth",
    epochs: Annotated[int, typer.Option(parser=bounds.EPOCHS, help="Student epochs.")] = 10,
    teacher_epochs: Annotated[int | None, typer.Option(parser=bounds.EPOCHS, help="Teacher epochs when it is trained here (default: --epochs).")] = None,
    train_clips: Annotated[int, typer.Option(parser=bounds.TRAIN_CLIPS, help="Synthetic training clips (2 s each).")] = 1000,
    val_clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Synthetic validation clips.")] = 200,
    batch_size: Annotated[int, typer.Option(parser=bounds.BATCH, help="Clips per step (over all torchrun processes and "
                                                 "accumulation steps).")] = 16,
    grad_accum: Annotated[int, typer.Option(parser=bounds.GRAD_ACCUM, help="Accumulate gradients over this many micro-batches per step.")] = 1,
    amp: Annotated[bool, typer.Option(help="Mixed precision: bf16 autocast on CPU, fp16 + loss scaling on CUDA.")] = False,
    lr: Annotated[float, typer.Option(parser=bounds.LR, help="Peak learning rate.")] = 3e-3,
    temperature: Annotated[float, typer.Option(parser=bounds.TEMPERATURE, help="Softmax temperature of the offset soft targets.")] = 4.0,
    kd: Annotated[float, typer.Option(parser=bounds.LOSS_WEIGHT, help="Weight of the soft-target KL loss.")] = 1.0,
    embed: Annotated[float, typer.Option(parser=bounds.LOSS_WEIGHT, help="Weight of the embedding (projected, cosine) loss.")] = 1.0,
    corr: Annotated[float, typer.Option(parser=bounds.LOSS_WEIGHT, help="Weight of the correlation-volume MSE.")] = 1.0,
    hard: Annotated[float, typer.Option(parser=bounds.LOSS_WEIGHT, help="Weight of the label loss; 0 for unlabelled data.")] = 1.0,
    seed: Annotated[int, typer.Option(parser=bounds.SEED, help="Seed for weights, data order and crops.")] = 0,
    out: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Run directory (student checkpoint, weights, report; teacher cache).")] = "runs/distill",
    resume: Annotated[bool, typer.Option(help="Continue from the run directory's checkpoint.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Distil a teacher into a student: soft offset targets, projected embeddings, correlation maps,
    plus labels when present. Writes OUT/model.safetensors, OUT/config.json, OUT/report.json.
    Runs data-parallel under torchrun (docs/distributed.md).

    Example: syncopt distill --teacher i3d_wav2vec --student x3d_s --epochs 8 --out runs/x3d_s_kd
    Example: syncopt distill --teacher fcn_lips --teacher-preset full --teacher-weights shipped --student fcn_lips
    --preset tiny --data videos.csv --hard 0 --out runs/lips_kd
    """
    from syncopt.compress.distill import DistillConfig, distill
    from syncopt.distributed import current as current_rank

    config = DistillConfig(model=student, teacher=teacher, teacher_weights=teacher_weights, preset=preset,
                           teacher_preset=teacher_preset, data=data,
                           epochs=epochs, teacher_epochs=teacher_epochs, train_clips=train_clips, val_clips=val_clips,
                           batch_size=batch_size, grad_accum=grad_accum, amp=amp, lr=lr, temperature=temperature,
                           kd=kd, embed=embed, corr=corr,
                           hard=hard, seed=seed)
    report = distill(config, out, resume=resume)
    if not current_rank().main:  # under torchrun, rank 0 alone prints
        return
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    t, s = report.teacher, report.student
    typer.echo(f"{report.teacher_source}\n"
               f"teacher {t.name}: {t.params / 1e6:.2f} M params, {t.macs / 1e9:.3f} GMACs, offset acc {t.offset_accuracy:.3f}\n"
               f"student {s.name}: {s.params / 1e6:.2f} M params, {s.macs / 1e9:.3f} GMACs, offset acc {s.offset_accuracy:.3f} "
               f"(per-frame {s.per_frame_accuracy:.3f}); MACs x{report.macs_ratio:.3f}, size x{report.size_ratio:.3f}; "
               f"{report.wall_time_s / 60:.1f} min; weights {report.weights}")


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
    model: Annotated[str, typer.Option(help="--pipeline: model name or run directory.")] = "fcn",
    weights: Annotated[str | None, typer.Option(help="--pipeline: weights (default: shipped synthetic-data weights).")] = None,
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
    from syncopt import bench

    if pipeline is not None:
        if pipeline != "sync":
            raise UsageError(f"unknown pipeline '{pipeline}' (known: sync)")
        if as_csv or plot:
            raise UsageError("--csv and --plot apply to model benchmarks, not --pipeline")
        reports = [bench.bench_pipeline(v, model, preset, weights, crop, repeats=min(repeats, 3)) for v in targets]
        text = _json([r.model_dump(mode="json") for r in reports])
        if out:
            _write_text(out, text)
        if as_json:
            typer.echo(text)
        else:
            for r in reports:
                bench.print_pipeline(r)
        return
    report = bench.bench(targets, runtimes=[r.strip() for r in runtimes.split(",")] if runtimes else None,
                         batches=bounds.BATCH_LIST(batch), frames=bounds.FRAMES_LIST(frames) if frames else None,
                         threads=threads, preset=preset, warmup=warmup, repeats=repeats, max_seconds=max_seconds,
                         progress=None if as_json or as_csv else lambda line: typer.echo(line, err=True))
    if out:
        _write_text(out, report.model_dump_json(indent=2))
    if plot:
        bench.plot(report, plot)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    elif as_csv:
        typer.echo(bench.to_csv(report), nl=False)
    else:
        bench.print_table(report)
    failed = [c for c in report.cells if c.status == "failed"]
    if failed:  # after the report, so the cells that ran are not lost
        raise BenchFailure(f"{len(failed)} of {len(report.cells)} cells failed; first: {failed[0].target} "
                           f"{failed[0].runtime} B={failed[0].batch} T={failed[0].frames}: {failed[0].reason}")


def _write_text(path: str, text: str) -> None:
    from syncopt.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)


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
    from syncopt.streaming import StreamCropper, StreamingSync, read_chunks
    from syncopt.sync import load_sync_model

    if Path(model).is_file():
        from syncopt.runtimes import load

        net, synthetic = load(model), False
    else:
        net, _, synthetic = load_sync_model(model, preset, weights)
    stream = StreamingSync(net, window=window, tolerance=tolerance)
    pre = stream.pre
    chunk = max(1, round(chunk_ms * pre.fps / 1000))
    cropper = StreamCropper(crop, pre.crop_size)

    def show(results) -> None:
        if as_json:
            for r in results:
                typer.echo(r.model_dump_json())
        elif results:
            r = results[-1]
            typer.echo(f"t={r.time_s:7.2f} s  offset {r.offset:+3d} frames ({r.offset_ms:+5.0f} ms)  "
                       f"confidence {r.confidence:5.2f}  sync prob {r.sync_prob:.2f}  "
                       f"{'in sync' if r.in_sync else 'OUT OF SYNC'}")

    for i, (frames, audio) in enumerate(read_chunks(source, chunk, pre.fps, pre.sample_rate, input_format)):
        if i == 0 and synthetic and not as_json:  # after the source opened: a bad one gives only its error line
            typer.echo("note: synthetic-data weights shipped with syncopt (not trained on real video)", err=True)
        show(stream.push(cropper(frames), audio))
    show(stream.finish())
    if not stream.emitted:
        raise MediaError(f"{Path(source).name}: no frames decoded")


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
    from syncopt import bundle

    if args[0] == "verify":
        if len(args) < 2:
            raise UsageError("syncopt bundle verify needs at least one bundle")
        reports = [bundle.verify_bundle(b) for b in args[1:]]
        if as_json:
            typer.echo(_json([r.model_dump() for r in reports]))
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
    from syncopt import gate

    results = gate.run_gates(gate.load_config(config), machine)
    if junit:
        gate.write_junit(results, junit)
    if as_json:
        typer.echo(_json([r.model_dump() for r in results]))
    else:
        gate.print_summary(results)
    failed = [r.name for r in results if r.status == "failed"]
    if failed:
        raise GateBreach(f"{len(failed)} of {len(results)} gates failed: {', '.join(failed)}")


@app.command("prune")
def prune_cmd(
    source: Annotated[str, typer.Argument(help="A run directory (train, distill, prune) or a registered model name.")],
    macs: Annotated[float | None, typer.Option(parser=bounds.FRACTION, help="Target MACs as a fraction of the original (0.5 halves them).")] = 0.5,
    ratio: Annotated[float | None, typer.Option(parser=bounds.PRUNE_RATIO, help="Channel ratio to remove instead of a MAC target.")] = None,
    criterion: Annotated[str, typer.Option(help="Importance: magnitude, taylor or group_norm.")] = "group_norm",
    global_pruning: Annotated[bool, typer.Option("--global", help="Rank channels across layers, not per layer.")] = False,
    steps: Annotated[int, typer.Option(parser=bounds.STEPS, help="Iterative prune -> fine-tune rounds.")] = 1,
    epochs: Annotated[int, typer.Option(parser=bounds.EPOCHS_OR_NONE, help="Fine-tune epochs per round (0: prune only).")] = 0,
    final_epochs: Annotated[int, typer.Option(parser=bounds.EPOCHS_OR_NONE, help="Extra fine-tune epochs after the last round.")] = 0,
    kd: Annotated[bool, typer.Option(help="Distil each fine-tune from the unpruned model.")] = True,
    preset: Annotated[str, typer.Option(help="Preset of SOURCE when it is a name.")] = "tiny",
    weights: Annotated[str | None, typer.Option(help="Weights for SOURCE when it is a name.")] = None,
    data: Annotated[str, typer.Option(help="Fine-tune and validation clips: 'synth', or a folder/manifest .csv of "
                                           "in-sync videos (every 10th validates, at audio shifts -10..10).")] = "synth",
    train_clips: Annotated[int, typer.Option(parser=bounds.TRAIN_CLIPS, help="Synthetic fine-tune clips.")] = 1000,
    val_clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Synthetic validation clips.")] = 200,
    batch_size: Annotated[int, typer.Option(parser=bounds.BATCH, help="Clips per fine-tune step.")] = 16,
    out: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Output run directory (weights with the pruned architecture, report).")] = "runs/prune",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Structured channel pruning (Torch-Pruning dependency graph); embedding widths are kept.

    Example: syncopt prune runs/x3d_s_kd --macs 0.5 --steps 2 --epochs 2 --out runs/x3d_s_pruned
    """
    from syncopt.compress.prune import CRITERIA, PruneConfig, prune

    if criterion not in CRITERIA:
        raise UsageError(f"unknown pruning criterion '{criterion}' (known: {', '.join(CRITERIA)})")
    config = PruneConfig(model=source, preset=preset, weights=weights, macs=None if ratio is not None else macs,
                         ratio=ratio, criterion=criterion, global_pruning=global_pruning, steps=steps, epochs=epochs,
                         final_epochs=final_epochs, kd=kd, data=data, train_clips=train_clips, val_clips=val_clips,
                         batch_size=batch_size)
    report = prune(config, out, source=source)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    typer.echo(f"pruned {report.original.name}: MACs x{report.macs_ratio:.3f}, params x{report.params_ratio:.3f}, "
               f"offset accuracy {report.original.offset_accuracy:.3f} -> {report.pruned.offset_accuracy:.3f}; "
               f"weights {report.weights}")


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
    from syncopt.robustness import run_robustness, write_report

    report = run_robustness(targets, clips=clips, frames=frames, preset=preset,
                            corruptions=corruptions.split(",") if corruptions else None,
                            progress=None if as_json else (lambda line: typer.echo(line, err=True)))
    if out:
        write_report(report, out)
    if plot:
        from syncopt.plots import plot_robustness

        plot_robustness(report, plot)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
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


@app.command("quantize")
def quantize_cmd(
    source: Annotated[str, typer.Argument(help="An fp32 ONNX artifact, a run directory, or a registered model name.")],
    method: Annotated[str, typer.Option(help="ort (ONNX Runtime static QDQ), qat (quantization-aware fine-tuning -> "
                                               "QDQ ONNX), inc (Neural Compressor PT2E, tuned to --tolerance), "
                                               "tflite (full-integer, 2D students) or openvino (NNCF INT8 IR; "
                                               "accuracy control with --max-drop).")] = "ort",
    calibration: Annotated[str, typer.Option(help="Activation calibration: minmax, entropy or percentile.")] = "minmax",
    calibration_data: Annotated[str, typer.Option(help="'synth' or a folder/manifest of videos (ort, openvino).")] = "synth",
    eval_data: Annotated[str, typer.Option(help="Accuracy/agreement clips: 'synth' (held-out test split) or a "
                                                "folder/manifest of in-sync videos, scored at audio shifts -10..10 "
                                                "(never the calibration clips).")] = "synth",
    calibration_clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Calibration clips.")] = 64,
    eval_clips: Annotated[int, typer.Option(parser=bounds.CLIPS, help="Held-out synthetic test clips for accuracy and agreement.")] = 100,
    frames: Annotated[int, typer.Option(parser=bounds.FRAMES, help="Frames per clip (TFLite: the artifact's fixed length).")] = 50,
    tolerance: Annotated[float, typer.Option(parser=bounds.POINTS, help="Accuracy points INT8 may lose.")] = 1.0,
    qat_if_drop_over: Annotated[float | None, typer.Option(parser=bounds.POINTS, help="ort: fall back to QAT when static INT8 loses more "
                                                                "accuracy points than this.")] = None,
    qat_epochs: Annotated[int, typer.Option(parser=bounds.EPOCHS, help="QAT fine-tune epochs.")] = 2,
    lower_conv3d: Annotated[bool, typer.Option(help="ort: run 3D convolutions as INT8 2D ones on frames (a batch-1 "
                                                    "artifact; pays on full-size 3D students).")] = False,
    preset: Annotated[str, typer.Option(help="Preset of SOURCE when it is a name.")] = "tiny",
    weights: Annotated[str | None, typer.Option(help="Weights for SOURCE when it is a name.")] = None,
    out: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Output folder for artifacts, manifests and the report.")] = "artifacts/int8",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    sensitivity: Annotated[bool, typer.Option("--sensitivity", help="ort: only rank the quantized nodes by the error "
                                                                    "each adds alone (JSON + PNG in --out).")] = False,
    fallback: Annotated[str, typer.Option(help="ort: 'auto' returns the most sensitive nodes to float until "
                                               "--max-drop, agreement and --min-cosine hold.")] = "none",
    max_drop: Annotated[float | None, typer.Option(parser=bounds.POINTS, help="--fallback, and openvino's NNCF accuracy "
                                                                              "control: accuracy points INT8 may "
                                                                              "lose (default --tolerance).")] = None,
    min_cosine: Annotated[float, typer.Option(parser=bounds.Range(-1, 1), help="Worst per-frame embedding cosine "
                                                                                "INT8 must keep.")] = 0.99,
) -> None:
    """INT8 quantization with a report: size, accuracy drop and offset agreement against fp32,
    ONNX Runtime speed-up at batch 1. The INT8 ONNX artifact has a manifest (syncopt parity checks it).

    Example: syncopt quantize runs/x3d_s_pruned --method ort --calibration percentile --out artifacts/int8
    Example: syncopt quantize fcn --weights w.safetensors --fallback auto --max-drop 1 --min-cosine 0.99
    """
    from syncopt.compress.quantize import CALIBRATION, METHODS, QuantizeConfig, quantize

    if method not in METHODS:
        raise UsageError(f"unknown quantization method '{method}' (known: {', '.join(METHODS)})")
    if calibration not in CALIBRATION:
        raise UsageError(f"unknown calibration '{calibration}' (known: {', '.join(CALIBRATION)})")
    if fallback not in ("none", "auto"):
        raise UsageError(f"unknown --fallback '{fallback}' (known: none, auto)")
    if fallback == "auto" and method != "ort":
        raise UsageError(f"--fallback auto keeps ONNX Runtime QDQ nodes float: use --method ort, not {method}")
    config = QuantizeConfig(method=method, calibration=calibration, calibration_data=calibration_data, eval_data=eval_data,
                            calibration_clips=calibration_clips, eval_clips=eval_clips, frames=frames,
                            tolerance=tolerance, qat_if_drop_over=qat_if_drop_over, qat_epochs=qat_epochs,
                            lower_conv3d=lower_conv3d, preset=preset, weights=weights, fallback=fallback,
                            max_drop=max_drop, min_cosine=min_cosine)
    if sensitivity:
        from syncopt.compress.sensitivity import sensitivity as rank

        ranking = rank(source, config, out)
        if as_json:
            typer.echo(ranking.model_dump_json(indent=2))
        for n in ([] if as_json else ranking.nodes[:10]):
            typer.echo(f"{n.nmse:10.3e}  cos {n.cosine:.4f}  {n.op:8s} {n.node}")
        return
    report = quantize(source, config, out)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    if report.ptq_accuracy_drop is not None:
        typer.echo(f"static INT8 lost {report.ptq_accuracy_drop:.1f} points: quantization-aware fine-tuning used")
    speed = f", {'OpenVINO' if method == 'openvino' else 'ORT'} speed-up x{report.speedup:.2f}" if report.speedup else ""
    typer.echo(f"{report.artifact}: size x{report.size_ratio:.3f}, offset accuracy {report.fp32_accuracy:.3f} -> "
               f"{report.int8_accuracy:.3f} (drop {report.accuracy_drop:.1f} points), agreement "
               f"{report.offset_agreement:.1%}, min embedding cosine {report.min_embedding_cosine:.4f}{speed}; "
               f"{'within' if report.within_tolerance else 'OUTSIDE'} tolerance")
    if report.fallback is not None:
        fb = report.fallback
        cost = f", latency x{fb.speed_cost:.2f}" if fb.speed_cost else ""
        typer.echo(f"fallback: kept float {', '.join(fb.kept_float) or 'nothing'} (size x{fb.size_cost:.3f}{cost} "
                   f"against plain INT8); targets {'met' if fb.passed else 'NOT met'}")


@app.command("run")
def run_cmd(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML, e.g. recipes/quickstart.yaml.")],
    out: Annotated[str | None, typer.Option(parser=OUTPUT_FOLDER, help="Run directory (default: runs/<recipe name>).")] = None,
    force: Annotated[list[str] | None, typer.Option(help="Rerun this stage even if unchanged (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON.")] = False,
) -> None:
    """Run a recipe: train -> distill -> prune -> quantize -> export -> parity -> bench -> bundle -> gate,
    each stage optional, each into OUT/<stage>/ with a manifest (inputs' and outputs' sha256,
    parameters, wall time). Unchanged stages are skipped, so an interrupted run resumes where it
    stopped. Ends with a summary table (accuracy, MACs, size, latency per stage and runtime);
    exits 14 on a malformed recipe, or with the failing stage's code. See recipes/quickstart.yaml.

    Example: syncopt run recipes/quickstart.yaml --out runs/quickstart
    """
    from syncopt.recipe import load_recipe
    from syncopt.recipe_run import print_summary, run_recipe

    parsed = load_recipe(recipe)
    result = run_recipe(parsed, out or f"runs/{parsed.name or Path(recipe).stem}", force=tuple(force or ()))
    if as_json:
        typer.echo(result.report.model_dump_json(indent=2))
    else:
        print_summary(result.report)
    if result.error is not None:
        raise result.error
