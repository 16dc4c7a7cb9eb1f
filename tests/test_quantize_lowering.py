"""Conv3d lowered to 2D ONNX convolutions: the same function, and INT8 kernels after ORT quantization."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from syncopt.export.lowering import lower_conv3d

CONVS = {  # the kinds X3D and the FCN video encoder use, plus strided/dilated/biased corners
    "pointwise": dict(in_channels=8, out_channels=6, kernel_size=1),
    "pointwise_strided": dict(in_channels=8, out_channels=6, kernel_size=1, stride=(1, 2, 2), bias=False),
    "temporal_depthwise": dict(in_channels=8, out_channels=8, kernel_size=(5, 1, 1), padding=(2, 0, 0), groups=8),
    "spatial_strided": dict(in_channels=3, out_channels=8, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
    "depthwise_3x3x3": dict(in_channels=8, out_channels=8, kernel_size=3, stride=(1, 2, 2), padding=1, groups=8),
    "dense_time_strided": dict(in_channels=4, out_channels=6, kernel_size=(3, 3, 3), stride=(2, 1, 2),
                               padding=(1, 0, 1), dilation=(2, 1, 1)),
}


def _onnx(module: nn.Module, channels: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    axes = {0: "B", 2: "T"}
    torch.onnx.export(module.eval(), (torch.randn(1, channels, 7, 12, 10),), buffer, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": axes, "y": axes}, opset_version=17, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("kind", CONVS)
def test_lowered_conv3d_equals_the_original(kind):
    torch.manual_seed(0)
    conv = nn.Conv3d(**CONVS[kind])
    lowered = _onnx(conv, conv.in_channels)
    assert lower_conv3d(lowered)
    onnx.checker.check_model(lowered, full_check=True)
    weights = {t.name: len(t.dims) for t in lowered.graph.initializer}
    assert {weights[n.input[1]] for n in lowered.graph.node if n.op_type == "Conv"} == {4}
    for frames in (9, 25):  # time stays dynamic
        x = torch.randn(1, conv.in_channels, frames, 12, 10)
        with torch.no_grad():
            expected = conv(x).numpy()
        got = _run(lowered, x.numpy())
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_a_graph_without_3d_convolutions_is_left_alone():
    graph = _onnx(nn.Sequential(nn.Flatten(1, 2), nn.Conv2d(21, 4, 3)), 3)
    before = graph.SerializeToString()
    assert not lower_conv3d(graph) and graph.SerializeToString() == before


def test_lowered_x3d_s_equals_torch(tmp_path):
    import syncopt
    from syncopt.export.onnx import export_onnx
    from syncopt.runtimes import load

    torch.manual_seed(0)
    model = syncopt.create("x3d_s", "tiny").eval()
    artifact = export_onnx(model, tmp_path)
    graph = onnx.load(str(artifact.path))
    assert lower_conv3d(graph)
    onnx.save(graph, str(artifact.path))
    feeds = model.spec.example_inputs(T=30, batch=1, seed=4)
    with torch.no_grad():
        expected = model(**feeds)
    got = load(artifact, threads=1).run({k: v.numpy() for k, v in feeds.items()})
    for name in ("video_emb", "audio_emb", "offset_logits"):
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-5, rtol=0)


def test_ort_int8_x3d_s_runs_its_video_convolutions_on_int8_kernels(tmp_path):
    """Before the lowering every Conv3d stayed float (excluded): 9 of tiny x3d_s's 52 convolutions were INT8."""
    import onnxruntime as ort

    import syncopt
    from syncopt.compress.quantize import QuantizeConfig, calibration_set
    from syncopt.compress.quantize.ort import ort_int8

    torch.manual_seed(0)
    model = syncopt.create("x3d_s", "tiny").eval()
    config = QuantizeConfig(calibration_clips=2, frames=16, lower_conv3d=True)
    _, int8 = ort_int8(model, calibration_set(model.spec, config), config, tmp_path)
    assert int8.batch == 1
    graph = onnx.load(str(int8.path)).graph
    int8_weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 3}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8_weights}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    kept_float = ("video_encoder/backbone/blocks.0/", "features.0/", "audio_encoder/backbone/projection/projection.3/",
                  "audio_encoder/projection/projection.0/")  # MFCC input; conv -> conv links (X3D stem, projections)
    stem = [n for n in convs if any(name in n.name for name in kept_float)]
    quantized = [n for n in convs if n.input[1] in dequantized]
    assert len(quantized) == len(convs) - len(stem) and sum("video_encoder/backbone" in n.name for n in quantized) > 30
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8.path), options, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert optimized.count("QLinearConv") == len(quantized)  # every DQ -> Conv -> Q fused into an INT8 kernel


def test_a_batch_1_artifact_runs_a_batch_item_by_item(tmp_path):
    import syncopt
    from syncopt.export.onnx import export_onnx
    from syncopt.runtimes import load

    torch.manual_seed(0)
    model = syncopt.create("x3d_s", "tiny").eval()
    artifact = export_onnx(model, tmp_path)
    graph = onnx.load(str(artifact.path))
    lower_conv3d(graph)
    onnx.save(graph, str(artifact.path))
    feeds = {k: v.numpy() for k, v in model.spec.example_inputs(T=20, batch=3, seed=5).items()}
    got = load(artifact.model_copy(update={"batch": 1}), threads=1).run(feeds)
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    np.testing.assert_allclose(got["offset_logits"], expected["offset_logits"].numpy(), atol=1e-5, rtol=0)
