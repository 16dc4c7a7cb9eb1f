"""``syncopt parity --locate``: the first node at which an artifact's tensors leave its reference's.

The reference is the artifact's source model exported to fp32 ONNX (its node outputs are the
names every row is keyed by; its graph outputs are replaced by the torch model's own), an fp32
ONNX artifact, or a golden ``.npz`` written by :func:`save_reference` (no torch needed). Both run
on the same feeds with every intermediate tensor exposed:

- ONNX artifacts (ONNX Runtime): every node output is added as a graph output, and tensors are
  matched by name. In a QDQ (INT8) graph an original node's output is its float result before
  its own output Q/DQ pair, so a Q/DQ pair's error shows at the node that reads it.
- TFLite artifacts (LiteRT, ``experimental_preserve_all_tensors``): onnx2tf renames every
  tensor after TensorFlow ops, so names match only at the model's inputs and outputs. Each
  weighted TFLite op (convolutions, fully connected, batch matmul) is matched to the ONNX node
  it came from by its weights (same values up to layout and quantization: the best-correlated
  ONNX weight of the same size); its output is compared with that node's output or with the
  output of the activation/bias chain fused into it, whichever it matches. Ops without weights
  are not rows; their error shows at the next weighted op.
- OpenVINO IRs (the runtime's own compile settings, :mod:`syncopt.runtimes.openvino_runtime`):
  ``openvino.convert_model`` keeps the ONNX tensor names, so every op output carrying a reference
  tensor's name is added as a model output (``Model.add_outputs``) and matched by that name; an
  output with no name, by its op's friendly name where that is a reference node's (the frontend
  names the op that computes a node's result after the node). An output with several names (an
  Expand or Identity folded into its producer) serves each, broadcast to that tensor's shape. In an
  NNCF INT8 IR a tensor is its float value before its FakeQuantize, as in QDQ. Tensors the
  converter fused away (a Sigmoid inside Swish, a Conv scaled into the next Mul, constants) have no
  counterpart and count as unmatched.

Per row: max abs error, error relative to the reference tensor's range (max |a - b| / max |b|)
and cosine over the whole tensor, worst over the cases. A row breaks the node tolerance
(:data:`NODE_TOLERANCES`, the parity contract read relative to each tensor's range, as
intermediate tensors have no common scale) and the first such row in the reference's topological
order is reported. The model outputs are also judged by the parity contract
(:mod:`syncopt.parity`), which decides the exit status.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from syncopt.core.artifact import Artifact, load_artifact, permutation
from syncopt.core.atomic import atomic_path, temp_dir
from syncopt.core.errors import InputFileError, UsageError
from syncopt.parity import TOLERANCES, ParityReport, _errors, _judge, compare_decisions


class NodeTolerance(BaseModel):
    max_relative: float | None = None  # max |a - b| / max |b| over the tensor
    min_cosine: float | None = None


# fp32 / fp16: the contract's max abs (1e-4, 1e-2 on outputs of unit scale) relative to each tensor's
# range; int8: the contract's embedding cosine, for every tensor.
NODE_TOLERANCES = {"fp32": NodeTolerance(max_relative=1e-4), "fp16": NodeTolerance(max_relative=1e-2),
                   "int8": NodeTolerance(min_cosine=0.99)}
NODE_TOLERANCES["bf16"] = NODE_TOLERANCES["fp16"]  # as syncopt.parity holds bf16 to the fp16 row
WEIGHTED_ONNX = ("Conv", "ConvTranspose", "Gemm", "MatMul")
WEIGHTED_TFLITE = ("CONV_2D", "CONV_3D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")
# ONNX ops TFLite converters fuse into the weighted op before them (activation, bias, folded norm).
FUSABLE = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Add", "Mul",
           "BatchNormalization")
TFLITE_FUSABLE = ("ADD", "MUL", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "LOGISTIC", "TANH", "HARD_SWISH",
                  "QUANTIZE", "DEQUANTIZE", "RESHAPE")


class NodeError(BaseModel):
    index: int  # position in the reference's topological order
    node: str  # reference ONNX node (for TFLite rows: the weighted node the op came from)
    op: str
    tensor: str  # reference tensor compared
    matched: str  # "name", "weights" (TFLite) or "node" (an unnamed OpenVINO op named after the node)
    max_abs: float
    relative: float
    cosine: float
    breach: bool


class LocateReport(BaseModel):
    artifact: str
    runtime: str
    precision: str
    reference: str  # what the artifact was compared with
    tolerance: NodeTolerance
    cases: list[str]
    nodes: list[NodeError]  # topological order
    first_breach: NodeError | None
    unmatched: int  # reference nodes with a float output and no counterpart in the artifact
    parity: ParityReport  # the model outputs judged by the parity contract

    @property
    def passed(self) -> bool:
        return self.parity.passed


@dataclass
class Reference:
    """Feeds, reference tensors per case (keyed by ONNX tensor name) and the reference graph's nodes."""

    description: str
    cases: list[str]
    feeds: list[dict[str, np.ndarray]]
    tensors: list[dict[str, np.ndarray]]
    nodes: list[dict]  # {"name", "op", "inputs", "outputs"} in topological order
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # weighted node -> its weight


def locate(artifact_path: str | os.PathLike, reference: Reference | None = None, against: str | None = None,
           clips: int = 2, tolerance: NodeTolerance | None = None) -> LocateReport:
    """Compare every intermediate tensor of the artifact with ``reference`` (default: built from the
    artifact's source model, or from the fp32 ONNX artifact ``against``) on its feeds."""
    artifact = load_artifact(artifact_path)
    if artifact.format not in DUMPERS:
        raise UsageError(f"--locate supports {', '.join(DUMPERS)} artifacts, not {artifact.format}")
    if reference is None:
        reference = build_reference(artifact, against, clips)
    runtime, got = DUMPERS[artifact.format](artifact, reference)
    tol = tolerance or NODE_TOLERANCES[artifact.precision]
    rows = _rows(reference, got, tol)
    outputs = [{n: g[n] for n in artifact.spec.output_names} for g, _ in zip(got["tensors"], reference.cases)]
    return LocateReport(artifact=str(artifact.path), runtime=runtime, precision=artifact.precision,
                        reference=reference.description, tolerance=tol, cases=reference.cases, nodes=rows,
                        first_breach=next((r for r in rows if r.breach), None),
                        unmatched=sum(1 for n in _float_nodes(reference) if n["name"] not in {r.node for r in rows}),
                        parity=_output_parity(artifact, runtime, reference, outputs))


def build_reference(artifact: Artifact, against: str | None = None, clips: int = 2) -> Reference:
    """Feeds (one random input and ``clips`` synthetic clips, batch 1, the artifact's length) and every
    float node output of the fp32 ONNX reference; graph outputs from torch unless ``against`` is given."""
    import onnx

    spec = artifact.spec
    frames = artifact.frames or spec.standard_frames
    cases = [(f"random T={frames}", {k: v.numpy() for k, v in spec.example_inputs(T=frames, seed=100).items()})]
    if clips > 0:
        from syncopt.data.datasets import synth_dataset

        data = synth_dataset(spec, "test", clips, num_frames=frames)
        cases += [(f"synthetic clip {i} (T={frames})", {n: data[i][n][None].numpy() for n in spec.input_names})
                  for i in range(clips)]
    feeds = [f for _, f in cases]
    with temp_dir("locate") as tmp:
        if against is not None:
            source = load_artifact(against)
            if source.format != "onnx" or source.precision != "fp32":
                raise UsageError(f"--against takes an fp32 ONNX artifact, not {source.format} {source.precision}")
            path, description = source.path, f"fp32 ONNX artifact {source.path.name}"
        else:
            from syncopt.export.onnx import export_onnx
            from syncopt.runtimes import load

            torch_session = load(artifact, "torch")
            path = export_onnx(torch_session.model, Path(tmp), "fp32").path
            description = "torch fp32 (intermediate tensors: its fp32 ONNX export)"
        graph = onnx.load(str(path))
        tensors = _run_onnx(graph, feeds)
    if against is None:
        for case, values in zip(feeds, tensors):
            values.update(torch_session.run(case))
    initializers = {t.name: t for t in graph.graph.initializer}
    nodes = [{"name": n.name or n.output[0], "op": n.op_type, "inputs": list(n.input), "outputs": list(n.output)}
             for n in graph.graph.node]
    weights = {n.name or n.output[0]: onnx.numpy_helper.to_array(initializers[n.input[1]]).astype(np.float32)
               for n in graph.graph.node if n.op_type in WEIGHTED_ONNX and len(n.input) > 1 and n.input[1] in initializers}
    return Reference(description, [c for c, _ in cases], feeds, tensors, nodes, weights)


def save_reference(reference: Reference, path: str | os.PathLike) -> Path:
    """Write ``reference`` as a golden ``.npz`` (feeds, tensors, weights; node list as JSON), atomically."""
    arrays = {f"feed/{i}/{k}": v for i, f in enumerate(reference.feeds) for k, v in f.items()}
    arrays |= {f"tensor/{i}/{k}": v for i, t in enumerate(reference.tensors) for k, v in t.items()}
    arrays |= {f"weight/{k}": v for k, v in reference.weights.items()}
    meta = {"description": reference.description, "cases": reference.cases, "nodes": reference.nodes}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return Path(path)


def load_reference(path: str | os.PathLike) -> Reference:
    """Read a golden ``.npz`` written by :func:`save_reference` (no pickled objects)."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"no reference file {p}")
    try:
        with np.load(p, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(f"{p.name} is not a golden reference written by --save-reference ({exc})") from exc
    count = len(meta["cases"])
    per_case = [[{k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"{kind}/{i}/")}
                 for i in range(count)] for kind in ("feed", "tensor")]
    weights = {k.removeprefix("weight/"): v for k, v in arrays.items() if k.startswith("weight/")}
    return Reference(f"golden {p.name} ({meta['description']})", meta["cases"], per_case[0], per_case[1],
                     meta["nodes"], weights)


def _run_onnx(graph, feeds: list[dict[str, np.ndarray]], names: set[str] | None = None) -> list[dict[str, np.ndarray]]:
    """Run an ONNX model with every node output (or those in ``names``) exposed; float results only."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(graph)
    present = {o.name for o in model.graph.output}
    extra = [o for n in model.graph.node if n.op_type != "Constant" for o in n.output
             if o and o not in present and (names is None or o in names)]
    model.graph.output.extend(onnx.ValueInfoProto(name=o) for o in extra)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs()]
    results = []
    for case in feeds:
        values = session.run(wanted, {k: v.astype(np.float32) for k, v in case.items()})
        results.append({k: v.astype(np.float32) for k, v in zip(wanted, values)
                        if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)})
    return results


def _onnx_tensors(artifact: Artifact, reference: Reference) -> tuple[str, dict]:
    import onnx

    names = {o for n in reference.nodes for o in n["outputs"]}
    tensors = _run_onnx(onnx.load(str(artifact.path)), reference.feeds, names)
    return "onnxruntime", {"tensors": tensors, "owner": dict.fromkeys(tensors[0], ""),
                           "matched": dict.fromkeys(tensors[0], "name")}


def _tflite_tensors(artifact: Artifact, reference: Reference) -> tuple[str, dict]:
    """Run the TFLite model keeping every tensor; map its outputs by name and its weighted ops by weights."""
    from syncopt.core.log import native_stderr_silenced
    from syncopt.export import require
    from syncopt.export.tflite import input_name

    litert = require("ai_edge_litert.interpreter", "tflite", "The TFLite runtime")
    if any(op.startswith("Flex") for op in artifact.ops):
        require("tensorflow", "tflite", "A TFLite model with Flex ops")
    with native_stderr_silenced():
        interpreter = litert.Interpreter(model_path=str(artifact.path), experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
    inputs = {input_name(d["name"]): d["index"] for d in interpreter.get_input_details()}
    outputs = [d["index"] for d in interpreter.get_output_details()]
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    spec = artifact.spec

    def perm(name: str, layout: str) -> tuple[int, ...]:
        native = artifact.native_tensor(name)
        return permutation(layout, native.layout if native else layout)

    runs = []
    for case in reference.feeds:
        for t in spec.inputs:
            interpreter.set_tensor(inputs[t.name], np.ascontiguousarray(case[t.name].transpose(perm(t.name, t.layout))))
        interpreter.invoke()
        values = {}
        for index in details:
            try:
                values[index] = _dequantized(interpreter.get_tensor(index), details[index])
            except ValueError:  # tensors the interpreter did not keep (scratch buffers)
                continue
        named = {t.name: values[i].transpose(np.argsort(perm(t.name, t.layout))) for t, i in zip(spec.outputs, outputs)}
        runs.append((values, named))
    # LiteRT's op listing (op_name, inputs, outputs); a delegate's node lists every tensor it covers as input
    all_ops = [o for o in interpreter._get_ops_details() if o["op_name"] != "DELEGATE"]
    consumers: dict[int, list[dict]] = {}
    for o in all_ops:
        for i in o["inputs"]:
            consumers.setdefault(int(i), []).append(o)
    first = runs[0][0]
    ops = {o["index"]: o for o in all_ops if o["op_name"] in WEIGHTED_TFLITE and o["inputs"][1] in first}
    pairs = _match_weights({i: first[o["inputs"][1]] for i, o in ops.items()}, reference.weights)
    tensors = [dict(named) for _, named in runs]
    owner = {name: "" for name in runs[0][1]}
    nodes = {n["name"]: n for n in reference.nodes}
    for op_index, node in pairs.items():
        chain = [t for t in _tflite_chain(int(ops[op_index]["outputs"][0]), consumers) if t in first]
        choice = _best_pair([(t, first[t]) for t in chain],
                            [(t, reference.tensors[0][t]) for t in _fused_chain(nodes[node], reference)
                             if t in reference.tensors[0]])
        if choice is None or choice[1] in owner:
            continue
        index, name, axes = choice
        for (values, _), target in zip(runs, tensors):
            target[name] = _view(values[index], axes, reference.tensors[0][name].shape)
        owner[name] = node
    return "tflite", {"tensors": tensors, "owner": owner,
                      "matched": {name: "weights" if node else "name" for name, node in owner.items()}}


def _tflite_chain(tensor: int, consumers: dict[int, list[dict]]) -> list[int]:
    """The tensor and those of the single-consumer elementwise ops after it (bias, activation, (de)quantize)."""
    chain = [tensor]
    while len(following := consumers.get(chain[-1], [])) == 1 and following[0]["op_name"] in TFLITE_FUSABLE:
        chain.append(int(following[0]["outputs"][0]))
    return chain


def _openvino_tensors(artifact: Artifact, reference: Reference) -> tuple[str, dict]:
    """Run the IR, compiled as its runtime compiles it, with every op output matching a reference tensor
    (by tensor name, else by the op's friendly name) added as a model output (module docstring)."""
    from syncopt.runtimes import load

    session = load(artifact)
    graph = session.graph.clone()
    wanted = reference.tensors[0]
    ops = [op for op in graph.get_ordered_ops() if op.get_type_name() not in ("Constant", "Parameter", "Result")]
    ports: dict[str, object] = {}  # reference tensor -> IR output
    matched: dict[str, str] = {}
    for op in ops:
        for port in op.outputs():
            for name in sorted(port.get_names()):
                if name in wanted and name not in ports and port.get_element_type().is_real():
                    ports[name], matched[name] = port, "name"
    node_output = {n["name"]: n["outputs"][0] for n in reference.nodes if n["outputs"]}
    for op in ops:
        name = node_output.get(op.get_friendly_name())
        port = op.output(0) if op.get_output_size() else None
        if name in wanted and name not in ports and port is not None and not port.get_names() \
                and port.get_element_type().is_real():
            port.get_tensor().add_names({name})
            ports[name], matched[name] = port, "node"
    graph.add_outputs(list(ports.values()))
    compiled: dict[tuple, object] = {}
    tensors = []
    for case in reference.feeds:
        key = tuple((k, v.shape) for k, v in case.items())
        if key not in compiled:
            shaped = graph.clone()
            shaped.reshape({k: list(shape) for k, shape in key})
            compiled[key] = session.core.compile_model(shaped, session.device, session.config)
        model = compiled[key]
        result = model({k: v.astype(np.float32) for k, v in case.items()})
        values = {}
        for name in ports:
            value, shape = np.array(result[model.output(name)], np.float32), wanted[name].shape
            try:  # a folded Expand's name on its input: the same values, not yet broadcast
                values[name] = value if value.shape == shape else np.broadcast_to(value, shape)
            except ValueError:
                continue
        tensors.append(values)
    found = set.intersection(*(set(t) for t in tensors))
    return "openvino", {"tensors": [{k: t[k] for k in found} for t in tensors], "owner": dict.fromkeys(found, ""),
                        "matched": {k: matched[k] for k in found}}


DUMPERS = {"onnx": _onnx_tensors, "tflite": _tflite_tensors, "openvino": _openvino_tensors}


def _dequantized(value: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor as float32: integer tensors through their (per-tensor or per-channel) scales."""
    if np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float32)
    q = detail.get("quantization_parameters", {})
    scales, zeros = q.get("scales", np.zeros(0)), q.get("zero_points", np.zeros(0))
    if scales.size == 0:
        raise ValueError("not a quantized tensor")
    shape = [1] * value.ndim
    if scales.size > 1:
        shape[q.get("quantized_dimension", 0)] = -1
    return ((value.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def _match_weights(tflite: dict[int, np.ndarray], onnx: dict[str, np.ndarray]) -> dict[int, str]:
    """TFLite op index -> ONNX node, greedily by the best correlation of weights of the same size and shape
    up to singleton axes and axis order."""
    scores = []
    for op, w in tflite.items():
        for node, ref in onnx.items():
            if w.size == ref.size and sorted(_squeezed(w.shape)) == sorted(_squeezed(ref.shape)):
                scores.append((max(_corr(_view(w, axes, ref.shape), ref) for axes in _axes(w.shape, ref.shape)), op, node))
    pairs: dict[int, str] = {}
    for score, op, node in sorted(scores, reverse=True):
        if score > 0.5 and op not in pairs and node not in pairs.values():
            pairs[op] = node
    return pairs


def _fused_chain(node: dict, reference: Reference) -> list[str]:
    """The node's output and those of the single-consumer activation/bias ops after it."""
    consumers: dict[str, list[dict]] = {}
    for n in reference.nodes:
        for i in n["inputs"]:
            consumers.setdefault(i, []).append(n)
    chain, tensor = [], node["outputs"][0]
    while True:
        chain.append(tensor)
        following = consumers.get(tensor, [])
        if len(following) != 1 or following[0]["op"] not in FUSABLE:
            return chain
        tensor = following[0]["outputs"][0]


def _best_pair(tflite: list[tuple[int, np.ndarray]], onnx: list[tuple[str, np.ndarray]]
               ) -> tuple[int, str, tuple[int, ...]] | None:
    """The TFLite tensor, reference tensor and axis order that match best (least max abs error): the
    same stage of a weighted op and its fused chain, wherever either converter ended its fusion."""
    best = None
    for index, value in tflite:
        for name, ref in onnx:
            for axes in (_axes(value.shape, ref.shape) if value.size == ref.size else []):
                err = float(np.abs(_view(value, axes, ref.shape) - ref).max())
                if best is None or err < best[0]:
                    best = (err, index, name, axes)
    return None if best is None else best[1:]


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _axes(shape: tuple[int, ...], target: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Orders of ``shape``'s non-singleton axes that give ``target``'s non-singleton shape."""
    src, dst = _squeezed(shape), _squeezed(target)
    if len(src) > 6:  # too many orders to try; only the identity
        return [tuple(range(len(src)))] if src == dst else []
    return [p for p in itertools.permutations(range(len(src))) if tuple(src[i] for i in p) == dst]


def _view(value: np.ndarray, axes: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    return value.reshape(_squeezed(value.shape)).transpose(axes).reshape(shape)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 0.0


def _float_nodes(reference: Reference) -> list[dict]:
    return [n for n in reference.nodes if n["outputs"] and n["outputs"][0] in reference.tensors[0]]


def _rows(reference: Reference, got: dict, tol: NodeTolerance) -> list[NodeError]:
    """One row per compared tensor, at its producer's position, or at the weighted node it was matched by."""
    position = {n["name"]: i for i, n in enumerate(reference.nodes)}
    rows = []
    for index, node in enumerate(reference.nodes):
        for tensor in node["outputs"]:
            if tensor not in got["tensors"][0] or tensor not in reference.tensors[0]:
                continue
            errs = [_metrics(g[tensor], r[tensor]) for g, r in zip(got["tensors"], reference.tensors)]
            max_abs, relative, cosine = max(e[0] for e in errs), max(e[1] for e in errs), min(e[2] for e in errs)
            breach = ((tol.max_relative is not None and not relative <= tol.max_relative)
                      or (tol.min_cosine is not None and not cosine >= tol.min_cosine))
            owner = got["owner"][tensor]
            at = reference.nodes[position[owner]] if owner else node
            rows.append(NodeError(index=position[at["name"]], node=at["name"], op=at["op"], tensor=tensor,
                                  matched=got["matched"][tensor], max_abs=max_abs, relative=relative,
                                  cosine=cosine, breach=breach))
    return sorted(rows, key=lambda r: r.index)


def _metrics(got: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    if got.shape != ref.shape:
        return float("inf"), float("inf"), -1.0
    diff = float(np.abs(got - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    a, b = got.ravel().astype(np.float64), ref.ravel().astype(np.float64)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / norms) if norms > 0 else float(np.array_equal(a, b))
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")), cosine


def _output_parity(artifact: Artifact, runtime: str, reference: Reference, outputs: list[dict]) -> ParityReport:
    """The model outputs judged by the parity contract, against the reference's outputs."""
    names = artifact.spec.output_names
    worst = {}
    agree, ties = [], 0
    for got, ref in zip(outputs, reference.tensors):
        for name in names:
            err = _errors(name, got[name], ref[name])
            prev = worst.get(name)
            worst[name] = err if prev is None else err.model_copy(update={
                "max_abs": max(prev.max_abs, err.max_abs), "max_rel": max(prev.max_rel, err.max_rel),
                "min_cosine": min(prev.min_cosine, err.min_cosine)})
        judged, near = compare_decisions(got, {n: ref[n] for n in names}, artifact.spec.max_offset)
        agree += judged
        ties += near
    tol = TOLERANCES[artifact.precision]
    report = ParityReport(artifact=str(artifact.path), runtime=runtime, precision=artifact.precision, tolerance=tol,
                          cases=reference.cases, outputs=list(worst.values()),
                          decision_agreement=float(np.mean(agree)) if agree else None, near_ties=ties, failures=[])
    report.failures = _judge(report, tol)
    return report


def locate_artifacts(artifacts: list[str], clips: int = 8, against: str | None = None, reference: str | None = None,
                     save_to: str | None = None) -> list[LocateReport]:
    """:func:`locate` for each artifact against torch, an fp32 ONNX artifact (``against``) or a golden
    ``reference`` file; ``save_to`` first writes the one artifact's reference there as a golden file."""
    from syncopt.core.artifact import load_artifact

    if save_to and (len(artifacts) != 1 or reference):
        raise UsageError("--save-reference takes one artifact and no --reference")
    golden = load_reference(reference) if reference else None
    if save_to:
        golden = build_reference(load_artifact(artifacts[0]), against, clips)
        save_reference(golden, save_to)
    return [locate(a, golden, against, clips) for a in artifacts]
