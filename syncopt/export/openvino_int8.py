"""INT8 OpenVINO IR with NNCF: the exporter's ``int8`` precision (``syncopt export --format openvino --precision
int8``, and ``syncopt quantize --method openvino``).

Post-training quantization with ``nncf.quantize`` (NNCF, "Post-training Quantization",
docs.openvino.ai/2026/openvino-workflow/model-optimization-guide/quantizing-models-post-training.html):
int8 weights per channel, activations calibrated on clips, ``PERFORMANCE`` preset (symmetric
weights and activations; signed tensors get a signed int8 range). Then a cosine check: the
worst per-frame embedding cosine against the float IR on check clips (synthetic ``val`` clips and
two random inputs) must reach ``min_cosine`` (DESIGN.md's INT8 row, 0.99). The first attempt quantizes
the convolutions that read a model input too; if it misses the row, they stay float (as in the ``ort``
method; :func:`float_scope`), and if that misses too, the most harmful layers return to float
(:func:`_fallback`) until it holds. Full x3d_s (random weights, 250 frames, 7 interleaved rounds on 2 AMD
EPYC cores) ran 1.08x faster with its input convolutions quantized, worst cosine 0.999989 against
0.999991. Without the check (``min_cosine`` None) they stay float. With a maximum accuracy drop instead,
the metric is the clip-offset accuracy on held-out validation clips, within that many points of the
float model's.

Measured (docs/export.md, "OpenVINO"): the PERFORMANCE preset ran full x3d_s at 250 frames 2.2x
OpenVINO f32 against MIXED's 1.5x (MIXED's asymmetric activations kept its depthwise
convolutions float) and gave trained tiny fcn the same cosines as MIXED.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import torch

from syncopt.core.errors import UsageError
from syncopt.core.log import status
from syncopt.core.spec import EMBEDDINGS, ModelSpec
from syncopt.data.datasets import ClipDataset, synth_dataset
from syncopt.export import require

MIN_COSINE = 0.99  # DESIGN.md, INT8 row: worst per-frame embedding cosine
CHECK_CLIPS = 8  # synthetic val clips of the cosine check (beside two random inputs)
MAX_FALLBACK = 8  # at most this many layers return to float (as the ort method's --fallback auto)
RANK_CLIPS = 16  # calibration clips of the fallback's ranking quantizations (its real attempts use all)
CONVOLUTIONS = ("Convolution", "GroupConvolution")
NORMALIZATIONS = ("MVN", "GroupNormalization")  # layer, group and instance norms as OpenVINO reads them from ONNX
DATA_MOVEMENT_TYPES = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice", "StridedSlice", "Pad", "Convert",
                       "Concat", "Split", "VariadicSplit")


def nncf_int8(graph, spec: ModelSpec, calibration: ClipDataset, validation: ClipDataset | None = None,
              max_drop: float | None = None, min_cosine: float | None = MIN_COSINE, preset: str = "PERFORMANCE"
              ) -> tuple[object, list[str]]:
    """``graph`` (an ``openvino.Model``) quantized by NNCF on ``calibration``, and the operators the cosine
    check's fallback returned to float (friendly names; none without it); see the module docstring.

    ``validation``: the accuracy-control clips (``max_drop``) or the cosine check's (default
    :data:`CHECK_CLIPS` synthetic ``val`` clips); ``min_cosine`` None skips the check; ``preset``:
    an ``nncf.QuantizationPreset`` name (benchmarks/bench_runtimes.py times MIXED beside the default)."""
    nncf = require("nncf", "openvino", "OpenVINO INT8 (NNCF)")
    nncf.set_log_level(logging.WARNING)  # NNCF logs every operator it leaves unquantized at INFO
    if len(calibration) == 0:
        raise UsageError("empty calibration set: no clips to calibrate on")

    def feeds(item: dict) -> dict[str, np.ndarray]:
        return {name: item[name][None].numpy() for name in spec.input_names}

    items = [feeds(calibration[i]) for i in range(len(calibration))]
    data = nncf.Dataset(items)
    options = dict(subset_size=len(calibration), preset=nncf.QuantizationPreset[preset],
                   ignored_scope=float_scope(nncf, graph))
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars on stdout
        if max_drop is not None:
            return _accuracy_controlled(nncf, graph, spec, data, feeds, validation, max_drop, options), []
        if min_cosine is None:
            return _quantize(nncf, graph, data, items, options), []
        checks = _cosine_checks(graph, spec, validation)
        all_convolutions = {"ignored_scope": float_scope(nncf, graph, inputs=False)}
        quantized = _quantize(nncf, graph, data, items, options | all_convolutions)
        worst, _ = cosine_errors(PerShape(quantized), checks)
        if worst >= min_cosine:
            return quantized, []
        status(f"NNCF INT8: worst embedding cosine {worst:.4f} < {min_cosine} with the input convolutions "
               "quantized: keeping them float")
        quantized = _quantize(nncf, graph, data, items, options)
        worst, _ = cosine_errors(PerShape(quantized), checks)
        if worst >= min_cosine:
            return quantized, []
        status(f"NNCF INT8: worst embedding cosine {worst:.4f} < {min_cosine}: returning layers to float")
        return _fallback(nncf, graph, quantized, data, items, checks, options, min_cosine)


def _quantize(nncf, graph, data, items: list[dict], options: dict):
    """``nncf.quantize`` of a copy of ``graph`` fixed at the calibration inputs' shapes (where they share
    them), with ``graph``'s dynamic input shapes restored. NNCF compiles the graph it is given, and the CPU
    plugin compiles some dynamic graphs for no input shape: tiny r3d18_vggish's, whose in-model spectrum
    (two 257-bin DFT convolutions on the waveform) it gave a lower time bound of 92 and then a 16-step
    tensor ('ParameterMismatch: Can not clone with new dims'); the runtime compiles static shapes only."""
    shapes = {tuple((name, value.shape) for name, value in item.items()) for item in items}
    if len(shapes) > 1:
        return nncf.quantize(graph, data, **options)
    dynamic = {p.get_friendly_name(): p.get_partial_shape() for p in graph.get_parameters()}
    quantized = nncf.quantize(at_shapes(graph, dict(shapes.pop())), data, **options)
    quantized.reshape(dynamic)
    return quantized


def at_shapes(graph, shapes: dict):
    """A copy of ``graph`` with its inputs fixed at ``shapes`` (name -> shape)."""
    graph = graph.clone()
    graph.reshape({name: list(shape) for name, shape in shapes.items()})
    return graph


class PerShape:
    """``graph`` compiled on the CPU as the runtime compiles fp32 and int8 IRs (f32 inference), static at
    each set of input shapes it is fed (see :func:`_quantize`); called with feeds, its outputs in order."""

    def __init__(self, graph) -> None:
        self.graph, self.compiled = graph, {}
        self.names = [set(output.get_names()) for output in graph.outputs]

    def __call__(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        import openvino as ov

        key = tuple((name, value.shape) for name, value in feeds.items())
        if key not in self.compiled:
            self.compiled[key] = ov.Core().compile_model(at_shapes(self.graph, dict(key)), "CPU",
                                                         {"INFERENCE_PRECISION_HINT": "f32"})
        return self.compiled[key](feeds).to_tuple()

    def index(self, name: str) -> int:
        """The position of output ``name``."""
        return next(i for i, names in enumerate(self.names) if name in names)


def _fallback(nncf, graph, quantized, data, items: list[dict], checks: list[dict], options: dict,
              min_cosine: float, max_steps: int = MAX_FALLBACK) -> tuple[object, list[str]]:
    """Quantize again with the most harmful weighted layers float, until the cosine check holds; the last
    attempt and the layers it keeps float.

    The operators the embeddings depend on that read a quantized input in ``quantized`` (the plain INT8
    graph: convolutions, pooling) are first ordered by the error each adds in one pass (:func:`_added_errors`),
    and the ``2 * max_steps`` that add the most are ranked by the mean cosine error with each alone float
    (one quantization each, calibrated on the first :data:`RANK_CLIPS` clips: the ranking took 16 of up to 25
    quantizations, and trained tiny fcn_attn's fallback 1005 s on the loaded 2-core machine); they return
    to float in that order, at most ``max_steps``; the last attempt is
    returned either way (parity judges it). Ranking every operator by a quantization each took more than
    25 minutes on tiny fcn_attn and syncnet_v2 (the conversion matrix). NNCF's own
    ``quantize_with_accuracy_control`` with this metric (ranking by the outputs' or only the embeddings'
    NMSE) returned head and pooling quantizers first on trained tiny fcn, missed the bound and handed
    back the float model."""
    scope = list(options["ignored_scope"].names)

    def attempt(kept: list[str], subset: int | None = None):
        quantized = _quantize(nncf, graph, data, items, options | {"ignored_scope": nncf.IgnoredScope(
            names=scope + kept, validate=False)} | ({"subset_size": subset} if subset else {}))
        return quantized, cosine_errors(PerShape(quantized), checks)

    fed = {op.get_friendly_name() for op in quantized.get_ops()
           if any(op.input_value(i).get_node().get_type_name() == "FakeQuantize" for i in range(op.get_input_size()))}
    candidates = [name for name in _tower(graph) if name in fed and name not in scope]
    added = _added_errors(graph, quantized, candidates, checks)
    shortlist = sorted(candidates, key=lambda name: -added[name])[:2 * max_steps]
    ranked = sorted(shortlist, key=lambda name: attempt([name], min(RANK_CLIPS, options["subset_size"]))[1][1])
    kept: list[str] = []
    for name in ranked[:max_steps]:
        kept.append(name)
        quantized, (worst, _) = attempt(kept)
        status(f"NNCF INT8: {len(kept)} layer(s) float ({name}): worst embedding cosine {worst:.4f}")
        if worst >= min_cosine:
            return quantized, kept
    status(f"NNCF INT8 misses the embedding cosine {min_cosine} with {len(kept)} layers float")
    return quantized, kept


def _added_errors(graph, quantized, names: list[str], checks: list[dict]) -> dict[str, float]:
    """Per operator, the error its INT8 form adds: the mean ``1 - cosine`` over channels (per batch item
    and position) of its output in ``quantized`` against ``graph`` on the checks' inputs, less the
    largest such error among the nearest of ``names`` upstream of it (depth accumulates error; this
    ranks where it is made). Two compiled models, one pass over the checks each."""
    def outputs(model) -> dict[str, list[np.ndarray]]:
        model = model.clone()
        ops = {op.get_friendly_name(): op for op in model.get_ops() if op.get_friendly_name() in names}
        model.add_outputs([op.output(0) for op in ops.values()])
        sources = [r.get_node().input_value(0).get_node().get_friendly_name() for r in model.outputs]
        compiled = PerShape(model)
        runs = [compiled(check["feeds"]) for check in checks]
        return {name: [np.asarray(run[i], np.float32) for run in runs]
                for i, name in enumerate(sources) if name in ops}

    def error(got: np.ndarray, want: np.ndarray) -> float:
        if got.ndim < 2:
            got, want = got[None, :, None], want[None, :, None]
        a = np.moveaxis(got, 1, -1).reshape(-1, got.shape[1])
        b = np.moveaxis(want, 1, -1).reshape(-1, got.shape[1])
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        return float(np.mean(1 - cos))

    want, got = outputs(graph), outputs(quantized)
    total = {n: float(np.mean([error(g, w) for g, w in zip(got[n], want[n])])) for n in want if n in got}
    ops = {op.get_friendly_name(): op for op in graph.get_ops()}

    def upstream(name: str) -> list[str]:
        found, seen = [], set()
        frontier = [ops[name].input_value(i).get_node() for i in range(ops[name].get_input_size())]
        while frontier:
            node = frontier.pop()
            if node.get_friendly_name() in seen:
                continue
            seen.add(node.get_friendly_name())
            if node.get_friendly_name() in total:
                found.append(node.get_friendly_name())
            else:
                frontier += [node.input_value(i).get_node() for i in range(node.get_input_size())]
        return found

    return {n: total[n] - max((total[u] for u in upstream(n)), default=0.0) if n in total else 0.0 for n in names}


def upstream(nodes) -> list[str]:
    """Friendly names of ``nodes`` and of every operator they depend on, nearest first."""
    frontier, seen, found = list(nodes), set(), []
    while frontier:
        node = frontier.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        found.append(node.get_friendly_name())
        frontier += [node.input_value(i).get_node() for i in range(node.get_input_size())]
    return found


def _tower(graph) -> list[str]:
    """The operators the embedding outputs depend on, nearest first (the head cannot move their cosine)."""
    return upstream(r.input_value(0).get_node() for r in graph.get_results()
                    if r.input_value(0).get_node().get_friendly_name() in EMBEDDINGS)


def reads_model_input(op) -> bool:
    """Whether ``op``'s first input comes from a model input through data movement only."""
    frontier = [op.input_value(0).get_node()]
    while frontier:
        node = frontier.pop()
        if node.get_type_name() == "Parameter":
            return True
        if node.get_type_name() in DATA_MOVEMENT_TYPES:
            frontier += [node.input_value(i).get_node() for i in range(node.get_input_size())]
    return False


def _cosine_checks(graph, spec: ModelSpec, validation: ClipDataset | None) -> list[dict]:
    """The cosine check's inputs with the float IR's embeddings: ``validation`` clips (default
    :data:`CHECK_CLIPS` synthetic ``val`` clips) and two random inputs (the parity check's kinds, other seeds).

    Models that read face-mesh lip motion get no random inputs: uniform noise on all 120 channels is no
    lip contour, lies far outside the calibrated ranges, and ruled the check (distilled tiny fcn_lips:
    worst cosine 0.94 with 8 layers float, against 0.9999 on held-out real clips)."""
    from syncopt.data.datasets import reads_lips

    if validation is None:
        validation = synth_dataset(spec, "val", CHECK_CLIPS)
    inputs = [{n: validation[i][n][None].numpy() for n in spec.input_names} for i in range(len(validation))]
    inputs += [] if reads_lips(spec) else [{k: v.numpy() for k, v in spec.example_inputs(T=t, batch=1, seed=seed).items()}
                                           for t, seed in ((spec.min_frames, 7), (41, 8))]
    reference = PerShape(graph)
    names = [e for e in EMBEDDINGS if e in spec.output_names]
    return [{"feeds": f, "reference": {e: reference(f)[reference.index(e)] for e in names}} for f in inputs]


def cosine_errors(compiled, checks: list[dict]) -> tuple[float, float]:
    """A :class:`PerShape` model's embeddings against the checks' references: the worst per-frame cosine, and
    the mean of 1 - cosine over frames, checks and embeddings (which ranks layers: the worst alone ties)."""
    worst, errors = 1.0, []
    for check in checks:
        out = compiled(check["feeds"])
        for name, want in check["reference"].items():
            got = out[compiled.index(name)]
            a, b = np.moveaxis(got, 1, -1).reshape(-1, got.shape[1]), np.moveaxis(want, 1, -1).reshape(-1, got.shape[1])
            cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            worst = min(worst, float(cos.min()))
            errors.append(float(np.mean(1 - cos)))
    return worst, float(np.mean(errors))


def float_scope(nncf, graph, inputs: bool = True):
    """NNCF's ignored scope: the convolutions that read a model input through data movement only (unless
    ``inputs`` is false), and every operator a layer normalization depends on (:data:`NORMALIZATIONS`, with
    the normalizations themselves).

    Input convolutions, measured on trained tiny fcn (8 synthetic clips, worst frame cosine of video/audio
    embeddings): NNCF's defaults 0.976/0.990; only convolutions and matrix products quantized, input
    convolutions float 0.985/0.993 — but ignoring every other operator type left tiny x3d_s's INT8 IR
    uncompilable (the CPU plugin moved a dequantization onto its rank-3 projection convolution's input and
    failed shape inference), so other operator types keep NNCF's defaults (trained tiny fcn's parity inputs:
    worst video-embedding cosine 0.958 with no scope, 0.966 with this one; the INT8 row wants 0.99).

    Layer normalizations: each rescales its input to unit variance per frame, so it magnifies the
    quantization noise of everything before it wherever the frame's own variation is small, and a
    transformer tower (wav2vec 2.0 / HuBERT: GroupNorm feature encoder, LayerNorm after the projection and
    after every block; Whisper, TimeSformer) normalizes again and again. Tiny i3d_wav2vec, worst per-frame
    audio-embedding cosine on the check clips: 0.20-0.60 plain; MVN inputs float 0.62; the feature encoder
    float 0.88, with its MVNs 0.79-0.88; the encoder blocks and MVNs float 0.69; NNCF's
    ``ModelType.TRANSFORMER`` (its own ignored types and attention patterns) 0.67, with MVNs float 0.42;
    MIXED preset 0.70; only the whole backbone up to its last normalization float reached 0.992. The
    convolution, BatchNorm-folded towers have no such operator, so this keeps float only the transformer
    towers (tiny: i3d_wav2vec and slowfast_hubert audio, 21 of 23 weighted operators; timesformer_whisper,
    33 of 37) and leaves the others as they were."""
    names = [op.get_friendly_name() for op in graph.get_ops()
             if inputs and op.get_type_name() in CONVOLUTIONS and reads_model_input(op)]
    names += upstream(op for op in graph.get_ops() if op.get_type_name() in NORMALIZATIONS)
    return nncf.IgnoredScope(names=names, validate=False)


def _accuracy_controlled(nncf, graph, spec: ModelSpec, data, feeds, validation: ClipDataset | None,
                         max_drop: float, options: dict):
    if validation is None or "offset_logits" not in spec.output_names:
        raise UsageError(f"accuracy-controlled INT8 needs validation clips and a model with offset_logits "
                         f"({spec.name} has {', '.join(spec.output_names)})")
    items = [validation[i] | {"offset": validation.items[i]["offset"]} for i in range(len(validation))]

    def accuracy(compiled, clips) -> float:
        from syncopt.models.decode import decode_dense

        port = compiled.output("offset_logits")
        hits = [decode_dense(torch.from_numpy(np.array(compiled(feeds(clip))[port][0]))).offset == clip["offset"]
                for clip in clips]
        return float(np.mean(hits))

    return nncf.quantize_with_accuracy_control(graph, data, nncf.Dataset(items), validation_fn=accuracy,
                                               max_drop=max_drop / 100, drop_type=nncf.DropType.ABSOLUTE,
                                               **options)
