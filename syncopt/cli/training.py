"""``syncopt train``, ``syncopt average``, ``syncopt ensemble`` and ``syncopt evaluate``."""

from __future__ import annotations

from typing import Annotated

import typer

from syncopt.cli.app import app
from syncopt.core import bounds
from syncopt.core.atomic import OUTPUT_FILE, OUTPUT_FOLDER
from syncopt.core.errors import UsageError


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
    window: Annotated[int, typer.Option(parser=bounds.WINDOW, help="Frames of each training window (a random "
                                                                   "crop of every clip).")] = 40,
    audio_context: Annotated[bool, typer.Option(help="Real data: each window's audio reaches the largest offset "
                                                     "beyond it on both sides, as evaluate --data decides windows.")
                             ] = False,
    mirror: Annotated[bool, typer.Option(help="Lip models: half the training windows show the mirror image of the "
                                              "lips (left and right swapped); on two sets of real development clips "
                                              "six seeds decided 1-s windows 0.9-3.6 points better with it.")] = False,
    init: Annotated[str | None, typer.Option(help="Fine-tune: start from these whole-model weights (a .safetensors "
                                                  "file, a run directory, or 'shipped'); --seed then draws only the "
                                                  "data order and augmentation.")] = None,
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
      syncopt train fcn_lips --preset full --init shipped --data my_clips/ --epochs 10 --lr 1e-3 --out runs/mine
    """
    from syncopt.training.distributed import current as current_rank
    from syncopt.training.train import TrainConfig, train

    config = TrainConfig(model=model, preset=preset, data=data, crop=crop, epochs=epochs, train_clips=train_clips,
                         val_clips=val_clips, batch_size=batch_size, grad_accum=grad_accum, amp=amp, lr=lr, seed=seed,
                         time_budget_min=time_budget,
                         video_weights=video_weights, audio_weights=audio_weights,
                         unfreeze_schedule=unfreeze_schedule, backbone_lr_scale=backbone_lr_scale,
                         window=window, audio_context=audio_context, mirror=mirror, init=init)
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


@app.command("average")
def average_cmd(
    runs: Annotated[list[str], typer.Argument(help="Finished run directories of one model, preset and "
                                                   "initialisation (--seed or --init).")],
    out: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Run directory to write (weights, config, report).")
                   ] = "runs/soup",
    as_json: Annotated[bool, typer.Option("--json", help="Print the soup's report as JSON.")] = False,
) -> None:
    """Average the weights of finished training runs into one model (a "model soup").

    Runs from one initialisation (the same --seed, or the same --init weights whatever the seed) that
    then trained differently (window, audio context, data, data order) average into one model, usually
    better than their average run, at one model's cost; runs of other initialisations or presets are
    refused. OUT is a run directory whose report names every run's data and configuration: evaluate,
    export and distill take it. Score the soup against its runs on
    development clips before keeping it.

    Example:
      syncopt average runs/lips_w40 runs/lips_w40_ctx runs/lips_w32 --out runs/lips_soup
      syncopt evaluate runs/lips_soup --data dev.csv
    """
    from syncopt.training.soup import average_runs

    _joined(average_runs(runs, out), as_json, f"averaged {len(runs)} runs")


@app.command("ensemble")
def ensemble_cmd(
    runs: Annotated[list[str], typer.Argument(help="Finished run directories of one model and preset (any seeds, "
                                                   "data or recipes).")],
    out: Annotated[str, typer.Option(parser=OUTPUT_FOLDER, help="Run directory to write (weights, config, report).")
                   ] = "runs/ensemble",
    mirror: Annotated[bool, typer.Option("--mirror", help="Also run each member on the mirror image of the face's "
                                                          "lip motion (lip models; twice the cost). One run is "
                                                          "then enough.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ensemble's report as JSON.")] = False,
) -> None:
    """Join finished training runs into one output ensemble: each run keeps its weights and the
    ensemble averages their per-frame offset logits (embeddings: each run's, unit-normalised and
    concatenated, so their cosine is the runs' mean cosine).

    Independently trained seeds err on different windows: on real development clips three seeds of the
    shipped recipe decide 1-s windows 1.2 points and 2-s windows 1.6 points better together than one seed
    on average (docs/real_video.md), at three times the model's cost (the face pipeline dominates `sync`'s
    time).
    With --mirror each run also reads the lips' mirror image: on two sets of real development clips
    that never lost and gained up to 1.7 points on 1-s windows.
    OUT is a run directory: sync, evaluate, export and distill take it.

    Example:
      syncopt ensemble runs/lips_s0 runs/lips_s1 runs/lips_s2 --mirror --out runs/lips_x3
      syncopt evaluate runs/lips_x3 --data dev.csv
    """
    from syncopt.training.ensemble import ensemble_runs

    _joined(ensemble_runs(runs, out, mirror), as_json,
            f"joined {len(runs)} run{'s' if len(runs) > 1 else ''}"
            + (f" and {'their' if len(runs) > 1 else 'its'} mirror views" if mirror else ""))


def _joined(report, as_json: bool, done: str) -> None:
    """Print a soup's or an ensemble's report (JSON), or one line saying what was made."""
    typer.echo(report.model_dump_json(indent=2) if as_json else
               f"{done} of {report.config.model} ({report.config.preset}) into {report.weights}")


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
    from syncopt.models.sources import resolve

    if data is not None:
        from syncopt.analysis.shift_eval import evaluate_command

        report, text = evaluate_command(model, preset, weights, data, shifts, context, cache, plot)
        typer.echo(report.model_dump_json(indent=2) if as_json else text)
        return
    if model is None:
        raise UsageError("evaluate needs MODEL (or --data for real clips)")
    from syncopt.data.datasets import synth_dataset
    from syncopt.training.evaluate import evaluate_dataset

    net = resolve(model, preset, weights, shipped=True).build()
    dataset = synth_dataset(net.spec, "test", clips, frames)
    report = evaluate_dataset(net, dataset)
    if plot:
        from syncopt.core.plots import plot_context_accuracy

        plot_context_accuracy(report, plot)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    for c in sorted(report.context_accuracy):
        typer.echo(f"context {c:2d} frames: accuracy {report.context_accuracy[c]:.3f}  ±1 {report.context_accuracy_pm1[c]:.3f}")
    typer.echo(f"per-frame accuracy {report.per_frame_accuracy:.3f} (varying clips {report.per_frame_accuracy_varying})  "
               f"in-sync AUC {report.sync_auc}  LSE-D {report.lse_d:.3f}  LSE-C {report.lse_c:.3f}  "
               f"segment IoU {report.segment_iou}")

