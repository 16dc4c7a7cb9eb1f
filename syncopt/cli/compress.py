"""``syncopt distill``, ``prune`` and ``quantize``."""

from __future__ import annotations

from typing import Annotated

import typer

from syncopt.cli.app import app
from syncopt.core import bounds
from syncopt.core.atomic import OUTPUT_FOLDER
from syncopt.core.errors import UsageError


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
    from syncopt.training.distributed import current as current_rank

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
    if report.fallback is None and report.float_ops:
        typer.echo(f"kept float by the cosine check: {', '.join(report.float_ops)}")
    if report.fallback is not None:
        fb = report.fallback
        cost = f", latency x{fb.speed_cost:.2f}" if fb.speed_cost else ""
        typer.echo(f"fallback: kept float {', '.join(fb.kept_float) or 'nothing'} (size x{fb.size_cost:.3f}{cost} "
                   f"against plain INT8); targets {'met' if fb.passed else 'NOT met'}")

