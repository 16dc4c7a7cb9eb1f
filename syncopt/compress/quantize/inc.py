"""``inc``: Intel Neural Compressor 3.x PT2E static INT8 with accuracy-aware tuning (see :mod:`syncopt.compress.quantize`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from syncopt.compress.quantize import QuantizeConfig, Quantized
from syncopt.core.artifact import Artifact, manifest_path
from syncopt.core.atomic import atomic_path, sha256_file
from syncopt.data.datasets import ClipDataset, synth_dataset


def quantize_inc(model: nn.Module, calib: ClipDataset, evaluation: ClipDataset, config: QuantizeConfig,
                 out: Path) -> Quantized:
    """Intel Neural Compressor 3.x: PT2E static INT8 with accuracy-aware tuning (``autotune`` stops at the
    first configuration within ``tolerance`` points of fp32 clip-offset accuracy on held-out val clips).

    The graph is exported at batch 1 and ``config.frames`` frames. Saved as a ``torch.export`` program
    (``.pt2``, no pickled code); its manifest records the fixed size. Runs in PyTorch only.
    """
    from syncopt.export import require

    require("neural_compressor.torch.quantization", "inc", "INC quantization")
    from neural_compressor.torch.export import export as inc_export
    from neural_compressor.torch.quantization import (
        StaticQuantConfig,
        TuningConfig,
        autotune,
    )

    spec = model.spec
    val = synth_dataset(spec, "val", max(config.eval_clips // 2, 8), config.frames)
    wrapped = _TupleOutputs(model).eval()
    example = tuple(calib[0][name][None] for name in spec.input_names)

    def run_fn(net) -> None:
        for i in range(len(calib)):
            net(*(calib[i][name][None] for name in spec.input_names))

    def eval_fn(net) -> float:
        from syncopt.models.decode import decode_dense

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

    return Quantized(artifact, run=run)


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
