"""OpenVINO IR export: ``<name>_<preset>_<precision>.openvino/`` holding ``model.xml`` and ``model.bin``.

The IR is converted with ``openvino.convert_model`` from the spec-driven fp32 ONNX export, so it
keeps that graph's names and its dynamic batch and time axes (the ONNX ``dim_param`` axes become
dynamic dimensions): one artifact serves any T at or above the spec's ``min_frames``. The two IR
files are written into one directory that is renamed into place, so a reader sees both or neither
(the layout of Ultralytics' ``*_openvino_model/`` folders); the manifest's sha256 covers both.

Precisions (what the runtime does with each, see :mod:`syncopt.runtimes.openvino_runtime`):

- fp32: float32 weights, inferred with ``INFERENCE_PRECISION_HINT=f32`` (the CPU plugin's own
  default on CPUs with AVX-512 BF16 or AMX is bf16, so the hint is always set);
- bf16: float16-stored weights (``compress_to_fp16``), inferred in bfloat16, except the
  precision-sensitive operators of :func:`precise_ops` (convolutions reading a model input, the head
  after the embeddings: correlation normalisation and predictor, softmax, and operators with a scalar
  or vector constant: biases, scales). They carry OpenVINO's "keep original precision" runtime info
  (``DisablePrecisionConversion`` in the IR), so their constants stay f32 in ``model.bin``, and the CPU
  plugin leaves such nodes out of its bf16/f16 enforcement (openvinotoolkit/openvino#21440; measured on
  AVX-512 BF16: tiny fcn's IR correlation equals the f32 correlation of its own embeddings within 5e-8).
  ``model.bin`` of tiny fcn 155 kB -> 228 kB with them kept (fp32 309 kB: the tiny models' predictor is a
  large share of their weights; a full model's is not). The towers' bf16 rounding still leaves the offset
  logits 0.014-0.033 from torch on the tiny models (docs/export.md, "OpenVINO": the fp16 row wants 1e-2);
- int8: NNCF post-training quantization (``nncf.quantize``) calibrated on synthetic clips, or on the
  clips :mod:`syncopt.compress.quantize.openvino` passes (``syncopt quantize --method openvino``),
  float parts inferred in f32; layers return to float until the worst embedding cosine to the float
  IR on check clips reaches ``min_cosine`` (the INT8 row's 0.99).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from syncopt.core.artifact import Artifact
from syncopt.core.errors import ExportError
from syncopt.core.formats import check_precision
from syncopt.export import require, write_artifact

XML, BIN = "model.xml", "model.bin"
PRECISE = "precise_0"  # rt_info key of ov::disable_fp16_compression; OpenVINO 2026 serializes it as
# DisablePrecisionConversion ("dynamic:f16"), honoured by compress_to_fp16 and the CPU plugin once read back
WEIGHTED = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")
CALIBRATION_CLIPS = 64  # as the TFLite and TensorRT INT8 exporters
# Frames of each INT8 calibration and check clip (4 s; the IR runs any T). Worst per-frame embedding cosine
# against f32 on 50-frame synthetic clips and random inputs, calibrated on 25 / 50 / 100-frame clips: trained
# tiny fcn_causal 0.966 / 0.986 / 0.990, fcn_attn 0.956 / 0.974 / 0.979, random syncnet_v2 0.985 / 0.988 /
# 0.989 (a causal model's first frames and the clips' edges weigh less in longer clips' ranges).
CALIBRATION_FRAMES = 100


def export_openvino(model: nn.Module, out_dir: Path, precision: str = "fp32", calibration=None,
                    calibration_clips: int = CALIBRATION_CLIPS, validation=None, max_drop: float | None = None,
                    min_cosine: float | None = None, frames: int | None = None) -> Artifact:
    """Write the IR directory with its manifest and source weights.

    int8 options: ``calibration`` (a :class:`~syncopt.data.datasets.ClipDataset`; default the first
    ``calibration_clips`` synthetic ``train`` clips of ``frames`` frames, default :data:`CALIBRATION_FRAMES`
    or the most one pass takes); with ``max_drop`` (accuracy points) and ``validation`` clips, NNCF's accuracy-controlled
    quantization keeps layers float until the clip-offset accuracy drop is within it; otherwise layers
    return to float until the worst embedding cosine on ``validation`` clips (default synthetic ``val``
    clips) and two random inputs reaches ``min_cosine`` (default the INT8 row's 0.99).
    """
    check_precision("openvino", precision)
    ov = require("openvino", "openvino", "OpenVINO export")
    from syncopt.export.onnx import export_onnx

    spec = model.spec
    with tempfile.TemporaryDirectory(prefix="syncopt-openvino-") as tmp:
        source = export_onnx(model, Path(tmp), "fp32").path
        try:
            graph = ov.convert_model(str(source))
        except Exception as exc:  # the frontend raises several types for unsupported operators
            raise ExportError(f"OpenVINO cannot convert {spec.name}: {' '.join(str(exc).split())[:300]}") from exc
    float_ops: list[str] = []
    if precision == "int8":
        from syncopt.data.datasets import synth_dataset
        from syncopt.export.openvino_int8 import CHECK_CLIPS, MIN_COSINE, nncf_int8

        length = frames or min(CALIBRATION_FRAMES, spec.max_frames or CALIBRATION_FRAMES)
        if calibration is None:
            calibration = synth_dataset(spec, "train", calibration_clips, num_frames=length)
        if validation is None:
            validation = synth_dataset(spec, "val", CHECK_CLIPS, num_frames=length)
        graph, float_ops = nncf_int8(graph, spec, calibration, validation=validation, max_drop=max_drop,
                                     min_cosine=MIN_COSINE if min_cosine is None else min_cosine)

    def write(folder: Path) -> dict:
        if precision == "bf16":
            _save_bf16(ov, graph, spec, folder / XML)
        else:
            ov.save_model(graph, str(folder / XML), compress_to_fp16=False)
        return {"ops": sorted({op.get_type_name() for op in graph.get_ops()})}

    return write_artifact(model, "openvino", out_dir, precision, write, float_ops=float_ops)


def precise_ops(graph, spec) -> list[str]:
    """The operators a bf16 IR keeps in f32 (friendly names): those with a real constant input that is a
    scalar or a vector (at most one axis longer than 1: biases, scales; not weights), the weighted operators
    reading a model input through data movement only (and the bias ``Add`` after each), softmax, and the
    head: every operator the non-embedding outputs depend on that the embedding outputs do not
    (correlation normalisation, predictor). Model-agnostic: it reads the graph and the spec's output names."""
    from syncopt.core.spec import EMBEDDINGS
    from syncopt.export.openvino_int8 import reads_model_input, upstream

    results = {name: r for r in graph.get_results() for name in r.input_value(0).get_names()}
    embeddings = set(upstream(r for name, r in results.items() if name in EMBEDDINGS))
    head = set(upstream(r for name, r in results.items() if name in spec.output_names and name not in EMBEDDINGS))
    head -= embeddings
    names = set()
    for op in graph.get_ops():
        kind = op.get_type_name()
        if kind in ("Constant", "Parameter", "Result"):
            continue
        constants = [op.input_value(i).get_node() for i in range(op.get_input_size())
                     if op.input_value(i).get_node().get_type_name() == "Constant"]
        if (op.get_friendly_name() in head or kind == "Softmax"
                or any(c.get_output_element_type(0).is_real() and sum(d > 1 for d in c.get_output_shape(0)) <= 1
                       for c in constants)):
            names.add(op.get_friendly_name())
        elif kind in WEIGHTED and reads_model_input(op):
            names.add(op.get_friendly_name())
            names |= {t.get_node().get_friendly_name() for t in op.output(0).get_target_inputs()
                      if t.get_node().get_type_name() == "Add"}
    return sorted(names)


def _save_bf16(ov, graph, spec, path: Path) -> None:
    """Save ``graph`` with float16-stored constants except those of :func:`precise_ops`, which are marked to
    keep their precision. ``compress_to_fp16`` honours the mark only as read from an IR (the attribute the
    serializer writes), not as set from Python, so the marked graph is saved uncompressed, read back and
    saved compressed."""
    graph = graph.clone()
    keep = set(precise_ops(graph, spec))
    for op in graph.get_ops():
        if op.get_friendly_name() in keep:
            op.get_rt_info()[PRECISE] = ""
            for i in range(op.get_input_size()):
                source = op.input_value(i).get_node()
                if source.get_type_name() == "Constant":
                    source.get_rt_info()[PRECISE] = ""
    with tempfile.TemporaryDirectory(prefix="syncopt-openvino-bf16-") as tmp:
        ov.save_model(graph, str(Path(tmp) / XML), compress_to_fp16=False)
        marked = ov.Core().read_model(str(Path(tmp) / XML))
        ov.save_model(marked, str(path), compress_to_fp16=True)
