"""Per-node INT8 sensitivity and float fallback for ONNX Runtime's QDQ quantization.

Sensitivity (``syncopt quantize --sensitivity``): for every node the QDQ graph quantizes, the
error it adds alone. Each such node is cut out of the QDQ graph with its own Q/DQ pairs (input
activations, weights, its output) and run on the fp32 graph's values of its inputs, over
calibration clips; its output is compared with the fp32 graph's. The ranking is by normalised
MSE (MSE over the reference's mean square), the measure of AIMET's per-layer QuantAnalyzer and
of ONNX Runtime's ``qdq_loss_debug`` (which pairs float and QDQ activations by name). A node's
input Q/DQ pair is shared with its producer's output, so both are charged for it.

Fallback (``syncopt quantize --fallback auto``): the worst node of those the judged outputs (offset
logits and embeddings) depend on returns to float (a node that feeds only the in-sync probability
cannot help: ``fcn_lips``'s head ranked first and second on its pruned student), the model is
quantized again (same calibration) and judged on the held-out clips, until the accuracy drop,
offset agreement and embedding cosine targets hold or ``max_steps`` nodes are float. The report
names the nodes kept float and what they cost: size and batch-1 ONNX Runtime latency against
plain INT8 (timed interleaved).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from torch import nn

from syncopt.compress.common import CONTEXT
from syncopt.core.artifact import Artifact, manifest_path
from syncopt.core.atomic import atomic_path, temp_dir, write_json
from syncopt.core.errors import UsageError
from syncopt.core.log import status
from syncopt.data.datasets import ClipDataset

MIN_AGREEMENT = 0.99  # DESIGN.md, int8 row
JUDGED_OUTPUTS = ("offset_logits", "video_emb", "audio_emb")  # what the fallback's targets measure


class NodeSensitivity(BaseModel):
    node: str  # the original node name (a lowered 3D convolution's glue counts with it)
    op: str
    nmse: float  # MSE / mean square of the fp32 output, worst over clips
    cosine: float  # worst over clips


class SensitivityReport(BaseModel):
    artifact: str  # the QDQ model measured
    clips: int
    nodes: list[NodeSensitivity]  # worst first


class FallbackStep(BaseModel):
    float_nodes: list[str]
    accuracy_drop: float
    offset_agreement: float
    min_embedding_cosine: float
    passed: bool


class FallbackReport(BaseModel):
    max_drop: float
    min_agreement: float
    min_cosine: float
    ranking: list[NodeSensitivity]
    steps: list[FallbackStep]  # the first is plain INT8
    kept_float: list[str]
    passed: bool
    plain_int8_bytes: int
    int8_bytes: int
    size_cost: float  # int8_bytes / plain_int8_bytes
    plain_latency_ms: float | None
    latency_ms: float | None
    speed_cost: float | None  # latency_ms / plain_latency_ms


def node_sensitivity(fp32: Artifact, int8: Artifact, feeds: list[dict[str, np.ndarray]]) -> SensitivityReport:
    """Rank the quantized nodes of ``int8`` (QDQ) by the error each adds alone on ``feeds``."""
    import onnx
    import onnxruntime as ort

    from syncopt.compress.quantize.ort import LOWERED_GLUE_OPS, QUANTIZED_OPS
    from syncopt.export.lowering import MARK, is_lowered
    from syncopt.parity.locate import _run_onnx

    reference = _run_onnx(onnx.load(str(fp32.path)), feeds)
    graph = onnx.load(str(int8.path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    initializers = {t.name: t for t in graph.initializer}
    worst: dict[str, NodeSensitivity] = {}
    for node in graph.node:
        quantizable = node.op_type in QUANTIZED_OPS or (node.op_type in LOWERED_GLUE_OPS and is_lowered(node.name))
        if not quantizable or not any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                                      for i in node.input):
            continue
        piece = _isolate(node, producer, consumers, initializers)
        if piece is None:
            continue
        nodes, inputs, output, name = piece
        if name not in reference[0] or any(i not in reference[0] for i in inputs):
            continue
        model = onnx.helper.make_model(
            onnx.helper.make_graph(nodes, "node", [onnx.helper.make_tensor_value_info(i, onnx.TensorProto.FLOAT, None)
                                                   for i in inputs], [onnx.ValueInfoProto(name=output)],
                                   [initializers[t] for t in {i for n in nodes for i in n.input} if t in initializers]),
            opset_imports=onnx.load(str(int8.path), load_external_data=False).opset_import)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        nmse, cosine = 0.0, 1.0
        for ref in reference:
            got = session.run([output], {i: ref[i] for i in inputs})[0].astype(np.float64)
            want = ref[name].astype(np.float64)
            nmse = max(nmse, float(((got - want) ** 2).mean() / max((want ** 2).mean(), 1e-12)))
            norms = np.linalg.norm(got) * np.linalg.norm(want)
            cosine = min(cosine, float((got.ravel() @ want.ravel()) / norms) if norms > 0 else 1.0)
        key = node.name.split(MARK)[0]
        prev = worst.get(key)
        if prev is None or nmse > prev.nmse:
            worst[key] = NodeSensitivity(node=key, op=node.op_type, nmse=nmse,
                                         cosine=min(cosine, prev.cosine) if prev else cosine)
    ranked = sorted(worst.values(), key=lambda s: s.nmse, reverse=True)
    return SensitivityReport(artifact=str(int8.path), clips=len(feeds), nodes=ranked)


def upstream_nodes(path: str | Path, outputs: tuple[str, ...]) -> set[str]:
    """Names of the nodes of the ONNX graph at ``path`` that any of ``outputs`` depends on."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        node = stack.pop()
        if node.name not in seen:
            seen.add(node.name)
            stack += [producer[i] for i in node.input if i in producer]
    return seen


def _isolate(node, producer: dict, consumers: dict, initializers: dict):
    """``node`` with the Q/DQ nodes around it: (nodes, activation inputs, output, fp32 name of the output).

    Activation inputs are the float tensors its input Q/DQ pairs quantize; the output is the
    dequantized value of its output Q/DQ pair if it has one, else its own output."""
    nodes, inputs = [], []
    for tensor in node.input:
        dq = producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            if tensor and tensor not in initializers:
                inputs.append(tensor)
            continue
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            nodes += [q, dq]
            if q.input[0] not in initializers:
                inputs.append(q.input[0])
        else:
            nodes.append(dq)  # quantized weights or bias stored as integers
    nodes.append(node)
    output = node.output[0]
    after = consumers.get(output, [])
    if len(after) == 1 and after[0].op_type == "QuantizeLinear":
        dqs = consumers.get(after[0].output[0], [])
        if len(dqs) == 1 and dqs[0].op_type == "DequantizeLinear":
            nodes += [after[0], dqs[0]]
            output = dqs[0].output[0]
    name = output if output != node.output[0] and not output.endswith("_DequantizeLinear_Output") else node.output[0]
    return nodes, list(dict.fromkeys(inputs)), output, name


def calibration_feeds(calib: ClipDataset, spec, count: int) -> list[dict[str, np.ndarray]]:
    return [{n: calib[i][n][None].numpy() for n in spec.input_names} for i in range(min(count, len(calib)))]


def sensitivity(source: str | Path, config, out_dir: str | Path) -> SensitivityReport:
    """``syncopt quantize --sensitivity``: quantize as ``ort`` does, then rank its nodes; JSON + PNG in OUT."""
    from syncopt.compress.quantize import _source_model, calibration_set
    from syncopt.compress.quantize.ort import ort_int8
    from syncopt.core.plots import plot_sensitivity

    if config.method != "ort":
        raise UsageError(f"--sensitivity ranks ONNX Runtime's QDQ nodes: use --method ort, not {config.method}")
    out = Path(out_dir)
    model = _source_model(source, config)
    calib = calibration_set(model.spec, config)
    fp32, int8 = ort_int8(model, calib, config, out)
    report = node_sensitivity(fp32, int8, calibration_feeds(calib, model.spec, config.sensitivity_clips))
    stem = out / f"{model.spec.name}_{model.spec.preset}_int8_sensitivity"
    write_json(stem.with_suffix(".json"), report.model_dump(mode="json"))
    plot_sensitivity(report, stem.with_suffix(".png"))
    return report


def fallback(model: nn.Module, calib: ClipDataset, test: ClipDataset, config, out: Path, fp32: Artifact,
             int8: Artifact) -> tuple[Artifact, FallbackReport]:
    """Return the most sensitive nodes to float one at a time until the targets hold (see module docstring)."""
    from syncopt.compress.quantize import _latencies, _session_runner, compare
    from syncopt.compress.quantize.ort import ort_int8
    from syncopt.export.lowering import MARK

    max_drop = config.tolerance if config.max_drop is None else config.max_drop
    ranking = node_sensitivity(fp32, int8, calibration_feeds(calib, model.spec, config.sensitivity_clips)).nodes
    judged = {name.split(MARK)[0] for name in upstream_nodes(int8.path, JUDGED_OUTPUTS)}
    candidates = [rank for rank in ranking if rank.node in judged]
    reference = _session_runner(fp32)

    def judge(candidate: Artifact, kept: list[str]) -> FallbackStep:
        stats = compare(reference, _session_runner(candidate), test)
        drop = 100 * (stats["fp32"].context_accuracy[CONTEXT] - stats["int8"].context_accuracy[CONTEXT])
        return FallbackStep(float_nodes=list(kept), accuracy_drop=drop, offset_agreement=stats["agreement"],
                            min_embedding_cosine=stats["cosine"],
                            passed=drop <= max_drop and stats["agreement"] >= MIN_AGREEMENT
                            and stats["cosine"] >= config.min_cosine)

    steps = [judge(int8, [])]
    final, kept, plain_bytes = int8, [], int8.path.stat().st_size
    with temp_dir("fallback") as tmp:
        for rank in candidates[:config.max_fallback]:
            if steps[-1].passed:
                break
            kept.append(rank.node)
            status(f"INT8 fallback: {', '.join(kept)} float")
            _, final = ort_int8(model, calib, config, Path(tmp) / f"step{len(kept)}", keep_float=set(kept))
            steps.append(judge(final, kept))
        plain_ms = ms = None
        if kept and config.speed_runs > 0:
            plain_ms, ms = _latencies((int8, final), config)
        if kept:
            final = _install(final, int8.path, kept)
    return final, FallbackReport(
        max_drop=max_drop, min_agreement=MIN_AGREEMENT, min_cosine=config.min_cosine, ranking=ranking, steps=steps,
        kept_float=kept, passed=steps[-1].passed, plain_int8_bytes=plain_bytes,
        int8_bytes=final.path.stat().st_size, size_cost=final.path.stat().st_size / plain_bytes,
        plain_latency_ms=plain_ms, latency_ms=ms, speed_cost=ms / plain_ms if ms and plain_ms else None)


def _install(candidate: Artifact, target: Path, kept: list[str]) -> Artifact:
    """Copy the chosen candidate over the plain INT8 file ``target`` (atomically) with its manifest, which
    names the ``kept`` float nodes."""
    with atomic_path(target) as tmp:
        shutil.copyfile(candidate.path, tmp)
    installed = candidate.model_copy(update={"float_ops": kept})
    installed.write(manifest_path(target))
    return installed
