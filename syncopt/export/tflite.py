"""TFLite export through onnx2tf (ONNX -> TensorFlow -> TFLite), driven by the spec.

What onnx2tf 1.28.8 gives (measured on the tiny FCN models, see docs/export.md):

- Channel-first tensors become channel-last: video NCTHW -> NTHWC, MFCC NCFT -> NFTC,
  per-frame outputs NCT -> NTC. The manifest records each tensor's own layout and shape in
  ``Artifact.native``; the TFLite runtime transposes to and from the spec's layouts.
- A dynamic time axis does not survive conversion: from the dynamic-T ONNX graph onnx2tf gives
  outputs shaped (-1, 32, 31) (time and channels mixed up) that XNNPACK cannot resize. So the
  artifact is fixed at batch 1 and one clip length T (``frames``, default the spec's standard
  length), recorded as ``Artifact.frames``/``batch``; the runtime runs batch items one by one.
- onnx2tf simplifies its input ONNX file in place (onnxsim), so it converts a private copy, in
  which Constant nodes are rewritten as initializers (see ``_constants_as_initializers``), and it
  writes signature defs (``output_signaturedefs``): without them its saved_model step rejects TF
  op names that start with "/" (wav2vec2's weight-normed positional conv kernel).

Precisions: fp32; fp16 (float16 weights, float32 compute and IO); int8 = onnx2tf's
``integer_quant`` model: int8 weights and activations calibrated on synthetic clips, every op
an INT8 builtin kernel, float32 input/output tensors (QUANTIZE/DEQUANTIZE at the edges).

A mobile build must run on the builtin op set: ops that need the Flex delegate
(SELECT_TF_OPS, i.e. the TensorFlow runtime) fail the export unless ``allow_flex``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from torch import nn

from syncopt.core.artifact import Artifact, permutation
from syncopt.core.atomic import temp_dir
from syncopt.core.errors import ExportError
from syncopt.core.formats import check_precision
from syncopt.core.log import native_stderr_silenced
from syncopt.core.spec import ModelSpec, TensorSpec
from syncopt.export import require, write_artifact

_PRODUCED = {"fp32": "float32", "fp16": "float16", "int8": "integer_quant"}  # onnx2tf's file name suffixes
# Representative clips for full-integer INT8: with trained tiny fcn_attn, 32 left one out-of-range frame
# (worst video_emb cosine 0.984), 64 gave 0.990, 128 gave 0.992 (docs/export.md); the quantize route uses 64 too.
CALIBRATION_CLIPS = 64


def export_tflite(model: nn.Module, out_dir: Path, precision: str = "fp32", frames: int | None = None,
                  calibration_clips: int = CALIBRATION_CLIPS, allow_flex: bool = False,
                  keep_layout: tuple[str, ...] = ()) -> Artifact:
    """Write ``<name>_<preset>_<precision>_T<frames>.tflite`` with its manifest and source weights.

    ``keep_layout``: inputs onnx2tf must leave in the spec's layout (its
    ``keep_shape_absolutely_input_names``), e.g. streaming state that is concatenated with tensors
    onnx2tf did not transpose."""
    check_precision("tflite", precision)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    onnx2tf = require("onnx2tf", "tflite", "TFLite export")
    require("tensorflow", "tflite", "TFLite export")
    from syncopt.export.onnx import export_onnx

    spec: ModelSpec = model.spec
    t_len = frames or spec.standard_frames
    spec.check_length(t_len)
    sizes = spec.sizes(t_len, batch=1)

    def write(target: Path) -> dict:
        with temp_dir("tflite") as tmp:
            work = Path(tmp)
            source = export_onnx(model, work / "onnx", "fp32").path
            _constants_as_initializers(source)
            options = dict(input_onnx_file_path=str(source), output_folder_path=str(work / "tf"),
                           overwrite_input_shape=[f"{t.name}:{','.join(map(str, t.concrete_shape(sizes)))}"
                                                  for t in spec.inputs],
                           copy_onnx_input_output_names_to_tflite=True, non_verbose=True, output_signaturedefs=True,
                           keep_shape_absolutely_input_names=list(keep_layout) or None)
            if precision == "int8":
                options |= dict(output_integer_quantized_tflite=True,
                                custom_input_op_name_np_data_path=_calibration(spec, t_len, calibration_clips, work))
            _run_onnx2tf(onnx2tf, options)
            produced = work / "tf" / f"{source.stem}_{_PRODUCED[precision]}.tflite"
            if not produced.is_file():
                raise ExportError(f"{spec.name}: onnx2tf wrote no {produced.name}")
            if precision == "int8":  # the quantized file lists its outputs in another order than the float one
                _match_outputs(produced, work / "tf" / f"{source.stem}_float32.tflite", options)
            ops = tflite_ops(produced)
            flex = sorted(op for op in ops if op.startswith("Flex"))
            if flex and not allow_flex:
                raise ExportError(f"{spec.name} {precision}: TFLite needs Flex (SELECT_TF_OPS) ops {', '.join(flex)}; "
                                  f"a mobile build has builtin ops only")
            native = native_tensors(produced, spec, sizes)
            shutil.copyfile(produced, target)
        return {"native": native, "ops": ops}

    return write_artifact(model, "tflite", out_dir, precision, write, tag=f"_T{t_len}", frames=t_len, batch=1)


def tflite_ops(path: str | os.PathLike) -> list[str]:
    """Operator names in a .tflite flatbuffer: builtin names (CONV_2D ...) and custom codes (FlexMaxPool3D ...)."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # codes > 127 live in BuiltinCode only
        if builtin == schema.BuiltinOperator.CUSTOM:
            ops.add(code.CustomCode().decode())
        else:
            ops.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(ops)


def native_tensors(path: str | os.PathLike, spec: ModelSpec, sizes: dict[str, int]) -> tuple[TensorSpec, ...]:
    """The TFLite model's inputs (matched by name) and outputs (in order) as TensorSpecs in their own layouts."""
    schema = _schema()
    graph = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0).Subgraphs(0)
    inputs = {input_name(graph.Tensors(graph.Inputs(i)).Name().decode()): graph.Tensors(graph.Inputs(i))
              for i in range(graph.InputsLength())}
    outputs = [graph.Tensors(graph.Outputs(i)) for i in range(graph.OutputsLength())]
    if set(inputs) != set(spec.input_names) or len(outputs) != len(spec.outputs):
        raise ExportError(f"{spec.name}: TFLite inputs {sorted(inputs)} / {len(outputs)} outputs do not match the spec")
    return tuple(_relayout(t, tuple(int(d) for d in tensor.ShapeAsNumpy()), sizes)
                 for t, tensor in [*((t, inputs[t.name]) for t in spec.inputs), *zip(spec.outputs, outputs)])


def _match_outputs(path: Path, reference: Path, options: dict) -> None:
    """Reorder ``path``'s subgraph outputs in place to follow ``reference``'s (which follow the ONNX graph).

    Both models run on the first calibration item; each reference output takes the not yet taken
    output of the same shape whose values correlate best with it.
    """
    from ai_edge_litert.interpreter import Interpreter

    feeds = {name: np.load(npy)[:1] for name, npy, _, _ in options["custom_input_op_name_np_data_path"]}
    results = []
    for model in (reference, path):
        with native_stderr_silenced():  # LiteRT announces its XNNPACK delegate on fd 2
            interpreter = Interpreter(model_path=str(model))
            interpreter.allocate_tensors()
        for d in interpreter.get_input_details():
            interpreter.set_tensor(d["index"], feeds[input_name(d["name"])].astype(np.float32))
        interpreter.invoke()
        results.append([interpreter.get_tensor(d["index"]).ravel() for d in interpreter.get_output_details()])
    ref, got = results
    order: list[int] = []
    for r in ref:
        candidates = [j for j, g in enumerate(got) if j not in order and g.shape == r.shape]
        if not candidates:
            raise ExportError(f"{path.name}: no quantized output matches a float output of {r.size} values")
        order.append(max(candidates, key=lambda j: np.corrcoef(r, got[j])[0, 1] if r.std() and got[j].std() else 0))
    data = bytearray(path.read_bytes())
    outputs = _schema().Model.GetRootAsModel(data, 0).Subgraphs(0).OutputsAsNumpy()  # a view into ``data``
    outputs[:] = outputs[order].copy()
    path.write_bytes(bytes(data))


def input_name(name: str) -> str:
    """The ONNX input name: onnx2tf copies it into some files, others keep ``serving_default_<name>:0``."""
    return name.removeprefix("serving_default_").removesuffix(":0")


def channels_last(layout: str) -> str:
    """onnx2tf's layout for a channel-first one: the channel axis (second) moves last."""
    return layout if len(layout) < 3 else layout[0] + layout[2:] + layout[1]


def _relayout(t: TensorSpec, actual: tuple[int, ...], sizes: dict[str, int]) -> TensorSpec:
    shape = t.concrete_shape(sizes)
    for layout in dict.fromkeys((channels_last(t.layout), t.layout)):
        if tuple(shape[i] for i in permutation(t.layout, layout)) == actual:
            return t.model_copy(update={"shape": actual, "layout": layout})
    raise ExportError(f"TFLite tensor '{t.name}' has shape {actual}, not {shape} in {t.layout} or channels-last order")


def _calibration(spec: ModelSpec, frames: int, count: int, work: Path) -> list[list]:
    """onnx2tf's representative dataset: synthetic clips per input, as .npy files in the TFLite layout."""
    from syncopt.data.datasets import synth_dataset

    data = synth_dataset(spec, "train", count, num_frames=frames)
    calibration = []
    for t in spec.inputs:
        batch = np.stack([data[i][t.name].numpy() for i in range(count)])
        path = work / f"calibration_{t.name}.npy"
        np.save(path, np.ascontiguousarray(batch.transpose(permutation(t.layout, channels_last(t.layout)))))
        calibration.append([t.name, str(path), np.zeros(1, np.float32), np.ones(1, np.float32)])
    return calibration


def _constants_as_initializers(path: Path) -> None:
    """Rewrite ``Constant`` nodes of the ONNX file as initializers, in place.

    onnx2tf 1.28 takes a Constant node's output for a graph variable where it needs a value: the
    wav2vec2/HuBERT feature extractor's GroupNorm (exported as InstanceNormalization with Constant
    scale and bias) fails with "Attempt to convert a value (Variable ...) with an unsupported type".
    """
    import onnx

    graph = onnx.load(str(path))
    nodes = []
    for node in graph.graph.node:
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.graph.initializer.append(tensor)
        else:
            nodes.append(node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    onnx.save(graph, str(path))


def _run_onnx2tf(onnx2tf, options: dict) -> None:
    """Run onnx2tf quietly; its failures (it calls sys.exit) become one-line ExportErrors."""
    _onnxsim_on_path()
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), native_stderr_silenced():  # TensorFlow's converter logs natively
            onnx2tf.convert(**options)
    except SystemExit as exc:
        lines = [ln.split("ERROR:", 1)[1].strip() for ln in log.getvalue().splitlines() if "ERROR:" in ln]
        raise ExportError(f"onnx2tf failed: {(lines[0] if lines else 'exit ' + str(exc.code))[:300]}") from exc
    except Exception as exc:  # TensorFlow raises many types while building the graph
        raise ExportError(f"onnx2tf failed: {' '.join(str(exc).split())[:300]}") from exc


def _onnxsim_on_path() -> None:
    """onnx2tf simplifies its input by running the ``onnxsim`` command; without it on PATH the
    conversion fails later with an unrelated shape error. Find the one installed beside this
    interpreter (a virtual environment that was not activated)."""
    here = Path(sys.executable).parent
    if shutil.which("onnxsim") is None and (here / "onnxsim").is_file():
        os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        schema = require("tensorflow.lite.python.schema_py_generated", "tflite", "Reading TFLite files")
    return schema

