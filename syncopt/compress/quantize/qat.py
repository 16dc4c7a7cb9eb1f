"""Quantization-aware fine-tuning through torchao's PT2E flow, saved as an INT8 QDQ ONNX artifact.

PyTorch 2.13 removed ``torch.ao.quantization``'s PT2E entry points; torchao carries them
(torchao 0.18 ``torchao.quantization.pt2e``: ``prepare_qat_pt2e`` -> train -> ``convert_pt2e``,
pytorch.org/ao "PT2E Quantization-Aware Training"). Steps:

1. ``torch.export`` the fp32 model with batch and time dynamic (``Dim.AUTO``), so training batches
   and the exported artifact may differ in size.
2. ``prepare_qat_pt2e`` with the X86 inductor quantizer's QAT config (per-channel symmetric int8
   weights, asymmetric uint8 activations; conv+BN fused for training, folded at convert).
3. A short fine-tune on synthetic ``train`` clips: label loss plus soft-target KD from the fp32
   model (``kd_loss`` of :mod:`syncopt.compress.distill`), AdamW with a cosine decay.
4. ``convert_pt2e`` gives quantize/dequantize ops around int8 weights; the dynamo ONNX exporter
   (onnxscript's ``quantized_decomposed`` translations) writes them as QuantizeLinear /
   DequantizeLinear — a QDQ model ONNX Runtime runs like the ``ort`` method's.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from syncopt.compress.quantize import QuantizeConfig, Quantized
from syncopt.core.artifact import Artifact, manifest_path
from syncopt.core.atomic import atomic_path, sha256_file
from syncopt.core.log import status
from syncopt.data.datasets import ClipDataset

TEMPERATURE = 4.0  # of the KD soft targets, as in syncopt distill's default


def qat_int8(model: nn.Module, fp32: Artifact, config, out: Path) -> Artifact:
    """Fine-tune ``model`` with fake quantization, convert to INT8 and write it as a QDQ ONNX artifact
    beside ``fp32`` (its export; the manifest keeps the fp32 source weights as the parity reference)."""
    from syncopt.export import require

    require("torchao.quantization.pt2e", "inc", "quantization-aware training")
    import onnx
    from torchao.quantization.pt2e import (
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    spec = model.spec
    teacher = copy.deepcopy(model).eval()  # the exported graph shares (and trains) the model's tensors
    example = spec.example_inputs(T=config.frames, batch=2, seed=0)  # batch 2: batch 1 would be specialised
    dynamic = {t.name: {axis: torch.export.Dim.AUTO for axis in spec.dynamic_axes()[t.name]} for t in spec.inputs}
    graph = torch.export.export(copy.deepcopy(model).eval(), (), kwargs=example, dynamic_shapes=dynamic).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    prepared = prepare_qat_pt2e(graph, quantizer)
    move_exported_model_to_train(prepared)
    _finetune(prepared, teacher, config)
    move_exported_model_to_eval(prepared)
    quantized = convert_pt2e(prepared)
    target = out / f"{spec.name}_{spec.preset}_int8_qat.onnx"
    status("QAT: exporting the INT8 graph to ONNX")
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(quantized, (), kwargs=example, dynamic_shapes=dynamic)
        onnx_program = torch.onnx.export(program, (), kwargs=example, input_names=spec.input_names,
                                         output_names=spec.output_names, dynamo=True, verbose=False)
        graph_proto = onnx_program.model_proto
        for node in graph_proto.graph.node:  # per-node source stack traces: more bytes than the weights
            del node.metadata_props[:]
            node.doc_string = ""
        onnx.checker.check_model(graph_proto, full_check=True)
        onnx.save(graph_proto, str(tmp))
    artifact = fp32.model_copy(update={"precision": "int8", "file": target.name, "sha256": sha256_file(target)})
    artifact.write(manifest_path(target))
    return artifact


def _finetune(prepared: nn.Module, teacher: nn.Module, config) -> None:
    """Label loss + KD from ``teacher`` for ``config.qat_epochs`` over ``config.qat_clips`` synthetic clips."""
    from syncopt.compress.distill import kd_loss
    from syncopt.data.datasets import synth_dataset
    from syncopt.training.losses import sync_losses

    data = synth_dataset(teacher.spec, "train", config.qat_clips, config.frames)
    loader = DataLoader(data, batch_size=config.qat_batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(prepared.parameters(), lr=config.qat_lr, weight_decay=0.0)
    total = max(1, config.qat_epochs * len(loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    for epoch in range(config.qat_epochs):
        losses = []
        for batch in loader:
            feeds = {"video": batch["video"], "audio": batch["audio"]}
            with torch.no_grad():
                target = teacher(**feeds)["offset_logits"]
            out = prepared(**feeds)
            loss = sync_losses(out, batch["labels"], batch["valid"])["loss"] + kd_loss(out["offset_logits"], target,
                                                                                       TEMPERATURE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        status(f"QAT epoch {epoch + 1}/{config.qat_epochs}: loss {sum(losses) / max(len(losses), 1):.3f}")


def quantize_qat(model: nn.Module, calib: ClipDataset, evaluation: ClipDataset, config: QuantizeConfig,
                 out: Path) -> Quantized:
    """Export fp32 ONNX (the speed and parity reference), then QAT to an INT8 QDQ ONNX artifact
    (``calib`` unused: QAT fine-tunes on its own synthetic clips)."""
    from syncopt.export.onnx import export_onnx

    fp32 = export_onnx(model, out, "fp32")
    return Quantized(qat_int8(model, fp32, config, out), fp32)
