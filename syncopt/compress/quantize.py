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
- ``qat``: quantization-aware fine-tuning (torchao PT2E, :mod:`syncopt.compress.qat`): a short
  label + KD fine-tune with fake quantization, converted to INT8 and exported as a QDQ ONNX
  artifact that ONNX Runtime runs like ``ort``'s. ``qat_if_drop_over``: ``ort`` falls back to it
  when static quantization loses more than that many points (the report says so).
- ``openvino``: NNCF post-training INT8 of the OpenVINO IR (:mod:`syncopt.compress.quantize_openvino`),
  with accuracy control when ``max_drop`` is set; fp32 reference and speed in OpenVINO (f32).
- ``tflite``: full-integer INT8 through the TFLite exporter (mobile, 2D-lowered students such
  as ``mobile_2d``); its representative dataset is the same synthetic calibration clips (the
  ``train`` split, first N clips at the artifact's length).

Calibration clips come from the ``train`` split (or a folder of videos); evaluation clips from
the held-out ``test`` split, so calibration never sees them. Accuracy is the 15-frame clip
offset accuracy of :mod:`syncopt.evaluate`; agreement is the share of clips whose decoded offset
equals fp32's; the speed-up is fp32 over INT8 median latency at batch 1 in the method's runtime (ONNX
Runtime; OpenVINO for ``openvino``), runs interleaved.
"""

from __future__ import annotations

import functools
import io
import statistics
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn
from tqdm.auto import tqdm

from syncopt.artifact import Artifact, load_artifact, manifest_path
from syncopt.atomic import atomic_path, sha256_file
from syncopt.compress.common import CONTEXT, state_bytes
from syncopt.compress.sensitivity import FallbackReport, fallback
from syncopt.data.datasets import EVAL_SHIFTS, ClipDataset, media_dataset, read_manifest, shifted_items, synth_dataset
from syncopt.errors import UsageError
from syncopt.formats import artifact_bytes
from syncopt.log import status
from syncopt.spec import ModelSpec
from syncopt.train import write_json

METHODS = ("ort", "qat", "inc", "tflite", "openvino")
# Only the weighted layers: the correlation (normalise, shifted products) and the elementwise tail
# stay float, which keeps the offset decision and avoids Q/DQ pairs around cheap ops.
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
# The Conv3d lowering's glue (frames layout, time shifts, sum of taps) is quantized too, so a lowered
# convolution reads and writes uint8: ONNX Runtime drops Q/DQ pairs around data-movement ops and fuses
# DQ -> Add -> Q into QLinearAdd (its QDQ transformers, "QDQ format" in the page above).
LOWERED_GLUE_OPS = ("Transpose", "Squeeze", "Unsqueeze", "Slice", "Pad", "Add")
DATA_MOVEMENT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Pad")
CALIBRATION = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


class QuantizeConfig(BaseModel):
    method: Literal["ort", "qat", "inc", "tflite", "openvino"] = "ort"
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
    fallback_report = None
    if config.method in PAIRED:
        fp32, int8 = PAIRED[config.method](model, calib, config, out)
        if config.method == "ort" and config.fallback == "auto":
            int8, fallback_report = fallback(model, calib, test, config, out, fp32, int8)
        ref_run, q_run = _session_runner(fp32), _session_runner(int8)
        fp32_ms, int8_ms = _latencies((fp32, int8), config)
        fp32_bytes = artifact_bytes(fp32.path)
    elif config.method == "inc":
        int8, q_run = _inc(model, calib, config, out)
        ref_run, fp32_ms, int8_ms = _torch_runner(model), None, None
        fp32_bytes = state_bytes(model)
    else:
        int8 = _tflite(model, config, out)
        ref_run, q_run = _torch_runner(model), _session_runner(int8)
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
        fallback=fallback_report,
        wall_time_s=time.perf_counter() - t0)
    write_json(out / f"{spec.name}_{spec.preset}_int8_{config.method}.report.json", report.model_dump(mode="json"))
    if config.method == "ort" and config.qat_if_drop_over is not None and drop > config.qat_if_drop_over:
        status(f"static INT8 lost {drop:.1f} points (> {config.qat_if_drop_over}): quantization-aware fine-tuning")
        qat = quantize(source, config.model_copy(update={"method": "qat"}), out)
        report = qat.model_copy(update={"ptq_accuracy_drop": drop})
        write_json(out / f"{spec.name}_{spec.preset}_int8_qat.report.json", report.model_dump(mode="json"))
    return report


def _source_model(source: str | Path, config: QuantizeConfig) -> nn.Module:
    from syncopt.compress.prune import load_model

    path = Path(source)
    if path.is_file() or path.suffix in (".onnx", ".json"):
        art = load_artifact(path)
        if art.format != "onnx" or art.precision != "fp32":
            raise UsageError(f"{path.name} is a {art.format} {art.precision} artifact; quantize an fp32 ONNX one")
        return load_model(art.source_model, art.source_preset, art.weights_path)
    return load_model(source, config.preset, config.weights)


def ort_int8(model: nn.Module, calib: ClipDataset, config: QuantizeConfig, out: Path,
             keep_float: set[str] = frozenset()) -> tuple[Artifact, Artifact]:
    """Export fp32 ONNX, then static QDQ quantization calibrated on ``calib``; ``keep_float``: more nodes left float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from syncopt.export.lowering import lower_conv3d
    from syncopt.export.onnx import export_onnx

    fp32 = export_onnx(model, out, "fp32")
    spec = model.spec
    target = out / f"{spec.name}_{spec.preset}_int8.onnx"
    graph = onnx.load(str(fp32.path))
    keep_float = _float_convs(graph.graph) | set(keep_float)
    batch = 1 if config.lower_conv3d and lower_conv3d(graph) else None
    keep_float |= _conv3d_nodes(graph.graph)
    with atomic_path(target.with_suffix(".pre.onnx")) as pre, atomic_path(target) as tmp:
        onnx.save(graph, str(pre))
        quant_pre_process(str(pre), str(pre), skip_symbolic_shape=True)
        # uint8 activations x int8 weights: x86's integer dot products multiply unsigned by signed bytes
        # (VPMADDUBSW; AVX-512 VNNI VPDPBUSD), and ONNX Runtime's CPU QLinearConv takes uint8 input for every
        # convolution here (with int8 activations 12 of lowered tiny x3d_s's 63 quantized ones stayed float Convs).
        quantize_static(str(pre), str(tmp), _Reader(calib, spec), quant_format=QuantFormat.QDQ,
                        per_channel=config.per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, CALIBRATION[config.calibration]),
                        op_types_to_quantize=[*QUANTIZED_OPS, *LOWERED_GLUE_OPS],
                        nodes_to_quantize=_quantized_nodes(pre, keep_float),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    target.with_suffix(".pre.onnx").unlink(missing_ok=True)
    artifact = fp32.model_copy(update={"precision": "int8", "file": target.name, "sha256": sha256_file(target),
                                       "batch": batch})
    artifact.write(manifest_path(target))
    return fp32, artifact


def _float_convs(graph) -> set[str]:
    """Convolutions that stay float: those reading a model input, and both ends of a conv -> conv link with
    only data movement between (X3D's (2+1)D stem), whose tensor no norm or nonlinearity has tamed.

    MFCC and such links span ranges one uint8 scale per tensor resolves poorly: on the distilled tiny x3d_s
    (100 held-out clips) quantizing them left worst-frame embedding cosines of 0.896 (video, Conv3d lowered)
    and 0.984 (audio), against 0.955 and 0.994 with them float. RGB's first convolution (3 input channels)
    gains no speed in INT8: tiny mobile_2d at 250 frames ran 0.71x fp32 with it INT8 and 0.95x with it float
    (full mobile_2d: 0.91x-1.0x either way)."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def next_convs(tensor: str) -> list:
        found, frontier = [], [tensor]
        while frontier:
            for node in consumers.get(frontier.pop(), []):
                if node.op_type == "Conv":
                    found.append(node)
                elif node.op_type in DATA_MOVEMENT_OPS:
                    frontier.extend(node.output)
        return found

    keep = {n.name for i in graph.input for n in next_convs(i.name)}
    for node in graph.node:
        linked = next_convs(node.output[0]) if node.op_type == "Conv" else []
        keep |= {node.name, *(n.name for n in linked)} if linked else set()
    return keep


def _conv3d_nodes(graph) -> set[str]:
    """3D convolutions. They stay float unless lowered: ONNX Runtime's CPU QLinearConv takes rank-5 uint8
    input, but through its generic im2col path, slower than the float Conv (tiny x3d_s, 25 frames: 2.18 ms
    with every Conv3d INT8, 1.92 ms fp32)."""
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    return {n.name for n in graph.node if n.op_type == "Conv" and ranks.get(n.input[1]) == 5}


def _qat(model: nn.Module, config: QuantizeConfig, out: Path) -> tuple[Artifact, Artifact]:
    """Export fp32 ONNX (the speed and parity reference), then QAT to an INT8 QDQ ONNX artifact."""
    from syncopt.compress.qat import qat_int8
    from syncopt.export.onnx import export_onnx

    fp32 = export_onnx(model, out, "fp32")
    return fp32, qat_int8(model, fp32, config, out)


def _openvino(model: nn.Module, calib: ClipDataset, config: QuantizeConfig, out: Path) -> tuple[Artifact, Artifact]:
    from syncopt.compress.quantize_openvino import CHECK_CLIPS, openvino_int8

    # real clips: the cosine check (or accuracy control) runs on calibration clips at audio shifts, never on
    # the evaluation clips (the synthetic val split serves synthetic models)
    check = None if config.calibration_data == "synth" else shifted_items(
        ClipDataset(calib.items[:CHECK_CLIPS], calib.pre), EVAL_SHIFTS, model.spec.max_offset)
    return openvino_int8(model, calib, config, out, validation=check)


# Methods whose fp32 reference and INT8 result are artifacts of one runtime, compared and timed in it:
# name -> (model, calibration clips, config, out) -> (fp32, int8)
PAIRED = {"ort": ort_int8, "qat": lambda model, calib, config, out: _qat(model, config, out), "openvino": _openvino}


def _quantized_nodes(path: str | Path, keep_float: set[str]) -> list[str]:
    """The weighted layers and the glue of lowered 3D convolutions (not the correlation's Pad/Slice),
    less ``keep_float`` (original node names; a lowered node is named after its convolution)."""
    import onnx

    from syncopt.export.lowering import MARK, is_lowered

    return [n.name for n in onnx.load(str(path)).graph.node
            if (n.op_type in QUANTIZED_OPS or (n.op_type in LOWERED_GLUE_OPS and is_lowered(n.name)))
            and n.name.split(MARK)[0] not in keep_float]


class _Reader:
    """ONNX Runtime calibration reader: one clip per batch, as the spec's named inputs."""

    def __init__(self, dataset: ClipDataset, spec: ModelSpec) -> None:
        self.items = iter(range(len(dataset)))
        self.dataset, self.spec = dataset, spec

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self.items, None)
        if index is None:
            return None
        item = self.dataset[index]
        return {name: item[name][None].numpy() for name in self.spec.input_names}


def _inc(model: nn.Module, calib: ClipDataset, config: QuantizeConfig, out: Path) -> tuple[Artifact, object]:
    """Intel Neural Compressor 3.x: PT2E static INT8 with accuracy-aware tuning (``autotune`` stops at the
    first configuration within ``tolerance`` points of fp32 clip-offset accuracy on held-out val clips).

    The graph is exported at batch 1 and ``config.frames`` frames. Saved as a ``torch.export`` program
    (``.pt2``, no pickled code); its manifest records the fixed size. Runs in PyTorch only.
    """
    from syncopt.export import require

    require("neural_compressor.torch.quantization", "inc", "INC quantization")
    from neural_compressor.torch.export import export as inc_export
    from neural_compressor.torch.quantization import StaticQuantConfig, TuningConfig, autotune

    spec = model.spec
    val = synth_dataset(spec, "val", max(config.eval_clips // 2, 8), config.frames)
    wrapped = _TupleOutputs(model).eval()
    example = tuple(calib[0][name][None] for name in spec.input_names)

    def run_fn(net) -> None:
        for i in range(len(calib)):
            net(*(calib[i][name][None] for name in spec.input_names))

    def eval_fn(net) -> float:
        from syncopt.decode import decode_dense

        index = spec.output_names.index("offset_logits")
        with torch.no_grad():
            hits = [decode_dense(net(*(val[i][n][None] for n in spec.input_names))[index][0]).offset
                    == val.items[i]["offset"] for i in range(len(val))]
        return float(np.mean(hits))

    graph = inc_export(wrapped, example_inputs=example)
    tuning = TuningConfig(config_set=[StaticQuantConfig()], tolerable_loss=config.tolerance / 100, max_trials=3)
    quantized = autotune(graph, tuning, eval_fn=eval_fn, run_fn=run_fn, example_inputs=example)
    target = out / f"{spec.name}_{spec.preset}_int8_inc_T{config.frames}.pt2"
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 name or a buffer; the file is written atomically
    torch.export.save(_compact_program(quantized, example), buffer)
    with atomic_path(target) as tmp:
        tmp.write_bytes(buffer.getvalue())
    artifact = Artifact(format="torch_export", precision="int8", file=target.name, sha256=sha256_file(target),
                        spec=spec, frames=config.frames, batch=1, source_model=spec.name, source_preset=spec.preset,
                        source_weights="", syncopt_version=_version())
    artifact.write(manifest_path(target))

    def run(feeds):
        with torch.no_grad():
            outs = quantized(*(torch.as_tensor(feeds[n]) for n in spec.input_names))
        return dict(zip(spec.output_names, outs))

    return artifact, run


def _compact_program(quantized: torch.fx.GraphModule, example: tuple) -> torch.export.ExportedProgram:
    """The INC model as a ``torch.export`` program without what made it 8x the fp32 weights.

    Measured on tiny fcn (2.52 MB .pt2 against 0.31 MB of fp32 weights): INC converts with
    ``fold_quantize=False`` (neural_compressor/torch/algorithms/pt2e_quant/core.py), so the fp32
    weights were stored and quantized on every call (0.33 MB; folding alone leaves the fp32 originals
    as unused parameters, so they are deleted too); ``torch.export.save`` also kept the
    example inputs (1.39 MB, a 50-frame clip) and each node's source trace and provenance in
    model.json (0.79 MB). Here the weight quantization is constant-folded (torchao's ``constant_fold``,
    as ``convert_pt2e(fold_quantize=True)`` does), and example inputs and traces are dropped. What
    remains beyond the weights is the serialized graph (about 0.25 MB for tiny fcn, whose correlation
    is 31 shifted slices), a fixed cost that does not grow with the weights. Loading the file needs
    torchao imported (it registers the ``quantized_decomposed`` ops).
    """
    from torchao.quantization.pt2e.constant_fold import constant_fold

    decomposed = torch.ops.quantized_decomposed
    weight_quantize = {decomposed.quantize_per_channel.default, decomposed.quantize_per_tensor.default}
    constant_fold(quantized, lambda node: node.target in weight_quantize)  # folds constant (weight) inputs only
    quantized.graph.eliminate_dead_code()
    used = {node.target for node in quantized.graph.nodes if node.op == "get_attr"}
    for name, _ in [*quantized.named_parameters(), *quantized.named_buffers()]:
        if name not in used:  # the fp32 originals of the folded int8 weights
            owner, _, attr = name.rpartition(".")
            delattr(quantized.get_submodule(owner), attr)
    quantized.recompile()
    program = torch.export.export(quantized, example)
    program.example_inputs = None
    for node in program.graph.nodes:
        for key in ("stack_trace", "from_node", "nn_module_stack", "torch_fn", "source_fn_stack"):
            node.meta.pop(key, None)
    return program


class _TupleOutputs(nn.Module):
    """The model with positional inputs and its outputs as a tuple in the spec's order (for export)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.model.spec.input_names, inputs)))
        return tuple(out[name] for name in self.model.spec.output_names)


def _version() -> str:
    from syncopt import __version__

    return __version__


def _tflite(model: nn.Module, config: QuantizeConfig, out: Path) -> Artifact:
    if config.calibration_data != "synth":
        raise UsageError("TFLite INT8 calibrates on the synthetic train split only (the exporter's representative set)")
    from syncopt.export import export

    return export(model, "tflite", out, "int8", frames=config.frames, calibration_clips=config.calibration_clips)


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
    from syncopt.decode import decode_dense
    from syncopt.evaluate import evaluate_outputs
    from syncopt.parity import compare_decisions

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
    from syncopt.bench import interleaved_times
    from syncopt.runtimes import load

    calls = {i: functools.partial(load(a, threads=1).run, a.spec.example_inputs(T=config.frames, batch=1, seed=0))
             for i, a in enumerate(artifacts)}
    times = interleaved_times(calls, config.speed_runs, warmup=3)
    return 1000 * statistics.median(times[0]), 1000 * statistics.median(times[1])
