"""``syncopt quantize``: INT8 artifacts with accuracy, agreement, size and speed against fp32.

- ``ort``: ONNX Runtime static quantization of the fp32 ONNX export — QDQ format, per-channel
  symmetric int8 weights, asymmetric uint8 activations calibrated on clips with MinMax, Entropy or
  Percentile (ONNX Runtime, "Quantize ONNX models", onnxruntime.ai/docs/performance/
  model-optimizations/quantization.html). 3D convolutions stay float, or with ``lower_conv3d`` become
  INT8 2D convolutions on frames (:mod:`syncopt.export.lowering`; the artifact is then fixed at
  batch 1). The artifact is an ``onnx``/``int8`` manifest like the export module's, so
  ``syncopt parity`` checks it against torch.
- ``inc``: Intel Neural Compressor 3.x post-training static INT8 through its PT2E path (torchao's
  X86 inductor quantizer) with accuracy-aware tuning: ``autotune`` accepts the first configuration
  whose clip-offset accuracy on val clips is within ``tolerance`` points of fp32. Saved as a
  ``torch.export`` program; runs in PyTorch only.
- ``qat``: quantization-aware fine-tuning (torchao PT2E, :mod:`syncopt.compress.quantize.qat`): a short
  label + KD fine-tune with fake quantization, converted to INT8 and exported as a QDQ ONNX
  artifact that ONNX Runtime runs like ``ort``'s. ``qat_if_drop_over``: ``ort`` falls back to it
  when static quantization loses more than that many points (the report says so).
- ``openvino``: NNCF post-training INT8 of the OpenVINO IR (:mod:`syncopt.export.openvino_int8`),
  with accuracy control when ``max_drop`` is set; fp32 reference and speed in OpenVINO (f32).
- ``tflite``: full-integer INT8 through the TFLite exporter (mobile, 2D-lowered students such
  as ``mobile_2d``); its representative dataset is the same synthetic calibration clips (the
  ``train`` split, first N clips at the artifact's length).

Calibration clips come from the ``train`` split (or a folder of videos); evaluation clips from
the held-out ``test`` split, so calibration never sees them. Accuracy is the 15-frame clip
offset accuracy of :mod:`syncopt.training.evaluate`; agreement is the share of clips whose decoded offset
equals fp32's; the speed-up is fp32 over INT8 median latency at batch 1 in the method's runtime (ONNX
Runtime; OpenVINO for ``openvino``), runs interleaved.
"""

from __future__ import annotations

import functools
import importlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, field_validator
from torch import nn
from tqdm.auto import tqdm

from syncopt.compress.common import CONTEXT, state_bytes
from syncopt.compress.sensitivity import FallbackReport, fallback
from syncopt.core.artifact import Artifact
from syncopt.core.atomic import write_json
from syncopt.core.errors import UsageError
from syncopt.core.formats import artifact_bytes
from syncopt.core.log import status
from syncopt.core.spec import ModelSpec
from syncopt.data.datasets import EVAL_SHIFTS, ClipDataset, media_dataset, read_manifest, shifted_items, synth_dataset


@dataclass(frozen=True)
class Method:
    """One quantize method: ``run(model, calibration clips, evaluation clips, config, out) -> Quantized``,
    imported when used (the evaluation clips are those the report judges on; a method that checks itself
    may use them). ``paired``: its fp32 reference is an artifact of the same runtime (compared and timed there);
    ``runtime``: the runtime that runs its INT8 artifact."""

    name: str
    run: str  # "module:function"
    paired: bool
    runtime: str


@dataclass(frozen=True)
class Quantized:
    int8: Artifact
    fp32: Artifact | None = None  # the paired methods' reference artifact
    run: Callable | None = None  # how to run int8 when no runtime session loads it (inc)


_M = "syncopt.compress.quantize"
METHODS = {m.name: m for m in (
    Method("ort", f"{_M}.ort:quantize_ort", paired=True, runtime="onnxruntime"),
    Method("qat", f"{_M}.qat:quantize_qat", paired=True, runtime="onnxruntime"),
    Method("openvino", f"{_M}.openvino:quantize_openvino", paired=True, runtime="openvino"),
    Method("inc", f"{_M}.inc:quantize_inc", paired=False, runtime="torch"),
    Method("tflite", f"{_M}.tflite:quantize_tflite", paired=False, runtime="tflite"),
)}
CALIBRATION = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}  # ort's calibrators


class QuantizeConfig(BaseModel):
    method: str = Field("ort", description=f"one of {', '.join(METHODS)}")
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_data: str = Field("synth", description="'synth' or a folder/manifest of videos")
    eval_data: str = Field("synth", description="'synth' (the held-out test split) or a folder/manifest of in-sync "
                                               "videos, each scored at every audio shift of EVAL_SHIFTS")
    calibration_clips: int = 64  # TFLite INT8 of tiny mobile_2d: 16 clips gave worst frame cosine 0.975, 64 gave 0.992
    eval_clips: int = 100
    frames: int = Field(50, description="frames per calibration/evaluation clip (TFLite: the fixed length)")
    per_channel: bool = True
    lower_conv3d: bool = Field(False, description="ort: 3D convolutions as INT8 2D ones on frames (a batch-1 artifact; "
                                                  "full x3d_s 2x fp32 at 10 s, tiny models slower: see docs)")
    preset: str = "tiny"
    weights: str | None = None
    tolerance: float = Field(1.0, description="accuracy points INT8 may lose")
    speed_runs: int = 50
    qat_if_drop_over: float | None = Field(None, description="ort: run QAT instead when PTQ loses more points")
    qat_epochs: int = 2
    qat_clips: int = 256
    qat_batch_size: int = 8
    qat_lr: float = 1e-4
    fallback: Literal["none", "auto"] = Field("none", description="ort: 'auto' returns the most sensitive nodes to "
                                                                  "float until the targets hold (compress/sensitivity.py)")
    max_drop: float | None = Field(None, description="fallback, and openvino (NNCF accuracy control on val clips): "
                                                     "accuracy points INT8 may lose (default: tolerance)")
    min_cosine: float = 0.99  # worst per-frame embedding cosine (DESIGN.md, int8 row)
    max_fallback: int = 8  # fallback: at most this many nodes return to float
    sensitivity_clips: int = 8  # calibration clips the per-node sensitivity runs on

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown quantize method {value!r} (known: {', '.join(METHODS)})")
        return value


class QuantizeReport(BaseModel):
    config: QuantizeConfig
    artifact: str
    fp32_bytes: int
    int8_bytes: int
    size_ratio: float
    fp32_accuracy: float
    int8_accuracy: float
    accuracy_drop: float  # points (x100) lost against fp32
    per_frame_accuracy_fp32: float
    per_frame_accuracy_int8: float
    offset_agreement: float  # share of eval clips with the same decoded offset as fp32
    clear_agreement: float | None = None  # the same over the clips fp32 decides by >= parity.NEAR_TIE_NATS
    near_ties: int = 0  # eval clips fp32 decides by less (left out of clear_agreement, as syncopt parity does)
    min_embedding_cosine: float  # per frame, over eval clips
    fp32_latency_ms: float | None  # ONNX Runtime, batch 1 (ort method)
    int8_latency_ms: float | None
    speedup: float | None
    within_tolerance: bool
    wall_time_s: float
    ptq_accuracy_drop: float | None = None  # set when QAT ran because ort PTQ lost more than qat_if_drop_over
    fallback: FallbackReport | None = None  # set by --fallback auto: nodes kept float, their cost
    float_ops: list[str] = []  # the INT8 artifact's manifest's: what a fallback kept float (ort --fallback auto, openvino)


def calibration_set(spec: ModelSpec, config: QuantizeConfig) -> ClipDataset:
    """Calibration clips: the first N of the synthetic ``train`` split, or N real clips spread over the list."""
    if config.calibration_clips <= 0:
        raise UsageError("empty calibration set: calibration_clips must be at least 1")
    if config.calibration_data == "synth":
        return synth_dataset(spec, "train", config.calibration_clips, config.frames)
    # clips spread evenly over the list (a manifest often lists one speaker's clips together)
    count = len(read_manifest(config.calibration_data))
    picked = sorted(set(np.linspace(0, count - 1, min(count, config.calibration_clips)).round().astype(int).tolist()))
    data, _ = media_dataset(spec, config.calibration_data, crop="full", indices=picked)
    # one length for all (ONNX Runtime's entropy and percentile calibrators stack the activations): the
    # first ``frames`` frames of every clip long enough
    step = spec.preprocessing.audio_per_frame
    data.items = [it | {key: it[key][..., :config.frames] for key in ("video", "labels", "valid") if key in it}
                  | {"audio": it["audio"][..., :step * config.frames]}
                  | ({"frames": it["frames"][:config.frames]} if "frames" in it else {})
                  for it in data.items if len(it["labels"]) >= config.frames][:config.calibration_clips]
    if not data.items:
        raise UsageError(f"--calibration-data {config.calibration_data}: no clip has --frames {config.frames} frames")
    return data


def evaluation_set(spec: ModelSpec, config: QuantizeConfig) -> ClipDataset:
    """Held-out clips for accuracy and agreement: the synthetic ``test`` split, or real in-sync clips at
    every audio shift of :data:`~syncopt.data.datasets.EVAL_SHIFTS` (labels ``-k``)."""
    if config.eval_data == "synth":
        return synth_dataset(spec, "test", config.eval_clips, config.frames)
    clips, _ = media_dataset(spec, config.eval_data, crop="full")
    data = shifted_items(clips, EVAL_SHIFTS, spec.max_offset)
    data.items = [it for it in data.items if len(it["labels"]) >= 2 * spec.max_offset + CONTEXT]
    if not data.items:
        raise UsageError(f"--eval-data {config.eval_data}: no clip is long enough to score {CONTEXT}-frame windows "
                         f"at shifts {EVAL_SHIFTS} ({2 * spec.max_offset + CONTEXT + 2 * max(EVAL_SHIFTS)} frames)")
    return data


def quantize(source: str | Path, config: QuantizeConfig, out_dir: str | Path) -> QuantizeReport:
    """Quantize ``source`` (an fp32 ONNX artifact, a run directory or a model name) into OUT."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    model = _source_model(source, config)
    spec = model.spec
    shortest = 2 * spec.max_offset + CONTEXT  # context_decisions' windows lie inside [K, T - K)
    if config.eval_data == "synth" and config.frames < shortest:  # no window: accuracy NaN, so every verdict was OUTSIDE
        raise UsageError(f"--frames {config.frames} is too short for {spec.name}'s {CONTEXT}-frame clip-offset "
                         f"accuracy at ±{spec.max_offset} offsets: clips need at least {shortest} frames")
    calib = calibration_set(spec, config)
    if len(calib) == 0:
        raise UsageError("empty calibration set: no clips to calibrate on")
    test = evaluation_set(spec, config)
    method = METHODS[config.method]
    module, _, name = method.run.partition(":")
    result: Quantized = getattr(importlib.import_module(module), name)(model, calib, test, config, out)
    int8, fallback_report = result.int8, None
    if method.paired:
        if config.method == "ort" and config.fallback == "auto":
            int8, fallback_report = fallback(model, calib, test, config, out, result.fp32, int8)
        ref_run, q_run = _session_runner(result.fp32), _session_runner(int8)
        fp32_ms, int8_ms = _latencies((result.fp32, int8), config)
        fp32_bytes = artifact_bytes(result.fp32.path)
    else:
        ref_run, q_run = _torch_runner(model), result.run or _session_runner(int8)
        fp32_ms = int8_ms = None
        fp32_bytes = state_bytes(model)
    stats = compare(ref_run, q_run, test)
    drop = 100 * (stats["fp32"].context_accuracy[CONTEXT] - stats["int8"].context_accuracy[CONTEXT])
    report = QuantizeReport(
        config=config, artifact=str(int8.path), fp32_bytes=fp32_bytes, int8_bytes=artifact_bytes(int8.path),
        size_ratio=artifact_bytes(int8.path) / fp32_bytes, fp32_accuracy=stats["fp32"].context_accuracy[CONTEXT],
        int8_accuracy=stats["int8"].context_accuracy[CONTEXT], accuracy_drop=drop,
        per_frame_accuracy_fp32=stats["fp32"].per_frame_accuracy, per_frame_accuracy_int8=stats["int8"].per_frame_accuracy,
        offset_agreement=stats["agreement"], clear_agreement=stats["clear_agreement"], near_ties=stats["near_ties"],
        min_embedding_cosine=stats["cosine"], fp32_latency_ms=fp32_ms,
        int8_latency_ms=int8_ms, speedup=fp32_ms / int8_ms if fp32_ms and int8_ms else None,
        within_tolerance=drop <= (config.tolerance if config.max_drop is None else config.max_drop)
        and stats["agreement"] >= 0.99 and stats["cosine"] >= config.min_cosine,
        fallback=fallback_report, float_ops=int8.float_ops,
        wall_time_s=time.perf_counter() - t0)
    write_json(out / f"{spec.name}_{spec.preset}_int8_{config.method}.report.json", report.model_dump(mode="json"))
    if config.method == "ort" and config.qat_if_drop_over is not None and drop > config.qat_if_drop_over:
        status(f"static INT8 lost {drop:.1f} points (> {config.qat_if_drop_over}): quantization-aware fine-tuning")
        qat = quantize(source, config.model_copy(update={"method": "qat"}), out)
        report = qat.model_copy(update={"ptq_accuracy_drop": drop})
        write_json(out / f"{spec.name}_{spec.preset}_int8_qat.report.json", report.model_dump(mode="json"))
    return report


def _source_model(source: str | Path, config: QuantizeConfig) -> nn.Module:
    from syncopt.models.sources import resolve

    resolved = resolve(source, config.preset, config.weights)
    art = resolved.artifact
    if art is not None and (art.format != "onnx" or art.precision != "fp32"):
        raise UsageError(f"{Path(source).name} is a {art.format} {art.precision} artifact; quantize an fp32 ONNX one")
    return resolved.build()


def _session_runner(artifact: Artifact):
    from syncopt.runtimes import load

    session = load(artifact, threads=1)
    return lambda feeds: {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in session.run(feeds).items()}


def _torch_runner(model: nn.Module):
    def run(feeds):
        with torch.no_grad():
            return model.eval()(**{k: torch.as_tensor(v) for k, v in feeds.items()})
    return run


def compare(reference, quantized, dataset: ClipDataset) -> dict:
    """Evaluation reports of both, decision agreement (over all clips, and over those fp32 decides clearly:
    :func:`syncopt.parity.compare_decisions`) and the worst per-frame embedding cosine."""
    from syncopt.models.decode import decode_dense
    from syncopt.parity import compare_decisions
    from syncopt.training.evaluate import evaluate_outputs

    outs = {"fp32": [], "int8": []}
    agree, clear, near_ties, cosine = [], [], 0, 1.0
    for index in tqdm(range(len(dataset)), desc="int8 vs fp32", leave=False, disable=None):
        item = dataset[index]
        feeds = {"video": item["video"][None].numpy(), "audio": item["audio"][None].numpy()}
        for name, run in (("fp32", reference), ("int8", quantized)):
            res = run(feeds)
            outs[name].append({k: v[0] for k, v in res.items()} | {"labels": item["labels"], "valid": item["valid"]})
        a, b = outs["fp32"][-1], outs["int8"][-1]
        agree.append(decode_dense(a["offset_logits"]).offset == decode_dense(b["offset_logits"]).offset)
        judged, ties = compare_decisions({"offset_logits": b["offset_logits"][None].numpy()},
                                         {"offset_logits": a["offset_logits"][None].numpy()}, len(a["offset_logits"]) // 2)
        clear += judged
        near_ties += ties
        for emb in ("video_emb", "audio_emb"):
            cosine = min(cosine, float(torch.nn.functional.cosine_similarity(a[emb], b[emb], dim=0).min()))
    offsets = [it["offset"] for it in dataset.items]
    kinds = [it["kind"] for it in dataset.items]
    return {"fp32": evaluate_outputs(outs["fp32"], offsets, kinds), "int8": evaluate_outputs(outs["int8"], offsets, kinds),
            "agreement": float(np.mean(agree)), "cosine": cosine,
            "clear_agreement": float(np.mean(clear)) if clear else None, "near_ties": near_ties}


def _latencies(artifacts: tuple[Artifact, Artifact], config: QuantizeConfig) -> tuple[float, float]:
    """Median ms of one batch-1 clip of ``config.frames`` frames in ONNX Runtime, one thread, for each
    artifact, timed side by side so load on the machine hits both alike."""
    from syncopt.core.timing import interleaved_times
    from syncopt.runtimes import load

    calls = {i: functools.partial(load(a, threads=1).run, a.spec.example_inputs(T=config.frames, batch=1, seed=0))
             for i, a in enumerate(artifacts)}
    times = interleaved_times(calls, config.speed_runs, warmup=3)
    return 1000 * statistics.median(times[0]), 1000 * statistics.median(times[1])
