"""Export-friendly operators: every model exports to ONNX with a dynamic time axis and matches.

A guard on the design invariant (no adaptive pooling, no data-dependent control flow): the
legacy TorchScript exporter traces at one length; ONNX Runtime must then reproduce PyTorch at
other lengths within the fp32 parity tolerances (max abs 1e-4, max rel 1e-3 of DESIGN.md).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

import syncopt


@pytest.mark.parametrize("name", syncopt.model_names())
def test_onnx_dynamic_time_axis_matches_torch(name, tmp_path):
    model = syncopt.create(name, "tiny")
    spec = model.spec
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (), str(path), kwargs=spec.example_inputs(T=16), input_names=spec.input_names,
                          output_names=spec.output_names, dynamic_axes=spec.dynamic_axes(), opset_version=17,
                          dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frames, batch in ((7, 1), (41, 2)):
        feeds = spec.example_inputs(T=frames, batch=batch, seed=frames)
        with torch.no_grad():
            expected = model(**feeds)
        got = session.run(spec.output_names, {k: v.numpy() for k, v in feeds.items()})
        for out_name, value in zip(spec.output_names, got):
            ref = expected[out_name].numpy()
            assert value.shape == ref.shape, out_name
            abs_err = np.abs(value - ref)
            assert abs_err.max() <= 1e-4, (out_name, abs_err.max())
            assert (abs_err / np.maximum(np.abs(ref), 1e-2)).max() <= 1e-3, out_name


def _band_attention(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """LocalAttention written densely: T x T scores, softmax over keys j with |j - t| <= radius inside the clip."""
    b, c, t = query.shape
    h, d = self.heads, c // self.heads
    q = self.q(query).reshape(b, h, d, t) / math.sqrt(d)
    k, v = self.kv(context).reshape(b, 2, h, d, t).unbind(1)
    frames = torch.arange(t)
    band = (frames[:, None] - frames[None, :]).abs() <= self.radius  # (query t, key j)
    weights = torch.softmax(torch.einsum("bhdt,bhdj->bhtj", q, k).masked_fill(~band, float("-inf")), dim=-1)
    attended = torch.einsum("bhtj,bhdj->bhdt", weights, v)
    return query + self.gate * self.out(attended.reshape(b, c, t))


def test_fcn_attn_local_attention_is_band_attention_with_shipped_weights(monkeypatch):
    """The export-friendly local attention (per-shift masks, for onnx2tf) computes plain band-masked
    attention: the shipped fcn_attn weights load strictly and give the dense formulation's outputs."""
    from syncopt.models.layers import LocalAttention
    from syncopt.models.sources import shipped_weights

    model = syncopt.create("fcn_attn", "tiny", weights=shipped_weights("fcn_attn", "tiny")).eval()
    gates = [m.gate.item() for m in model.modules() if isinstance(m, LocalAttention)]
    assert len(gates) == 4 and min(abs(g) for g in gates) > 0.01  # trained: the attention changes the outputs
    for frames in (5, 41):  # shorter than the window and longer
        feeds = model.spec.example_inputs(T=frames, batch=2, seed=frames)
        with torch.no_grad():
            got = model(**feeds)
            with monkeypatch.context() as patch:
                patch.setattr(LocalAttention, "forward", _band_attention)
                want = model(**feeds)
        for name in model.spec.output_names:
            assert (got[name] - want[name]).abs().max() <= 1e-5, name


def test_fcn_attn_softmax_input_keeps_the_in_clip_score_range(monkeypatch):
    """INT8-friendly masking: the scores entering LocalAttention's softmax span exactly the range of the
    in-clip (band) scores. Out-of-clip keys take the shift-0 score, not a -1e4 mask constant that would
    stretch the quantized range of the scores (docs/export.md). T=5 < the window: most shifts are out."""
    from syncopt.models.layers import LocalAttention
    from syncopt.models.sources import shipped_weights

    model = syncopt.create("fcn_attn", "tiny", weights=shipped_weights("fcn_attn", "tiny")).eval()
    band_ranges: list[tuple[float, float]] = []
    softmax_inputs: list[torch.Tensor] = []

    def record_band_range(module: LocalAttention, args: tuple[torch.Tensor, ...]) -> None:
        query, context = args if len(args) == 2 else (args[0], args[0])
        b, c, t = query.shape
        h, d = module.heads, c // module.heads
        q = module.q(query).reshape(b, h, d, t) / math.sqrt(d)
        k = module.kv(context).reshape(b, 2, h, d, t)[:, 0]
        frames = torch.arange(t)
        band = (frames[:, None] - frames[None, :]).abs() <= module.radius
        scores = torch.einsum("bhdt,bhdj->bhtj", q, k)[..., band]
        band_ranges.append((scores.min().item(), scores.max().item()))

    for m in model.modules():
        if isinstance(m, LocalAttention):
            m.register_forward_pre_hook(record_band_range)
    softmax = torch.softmax
    monkeypatch.setattr(torch, "softmax", lambda x, dim: softmax_inputs.append(x) or softmax(x, dim))
    with torch.no_grad():
        model(**model.spec.example_inputs(T=5, batch=2, seed=5))
    assert len(band_ranges) == len(softmax_inputs) == 4
    for (low, high), scores in zip(band_ranges, softmax_inputs):
        assert abs(scores.min().item() - low) <= 1e-5 and abs(scores.max().item() - high) <= 1e-5, (low, high)
