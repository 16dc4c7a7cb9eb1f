"""A trained tiny fcn with one fragile layer, for the accuracy-debugging tests (locate, sensitivity)."""

from __future__ import annotations

from pathlib import Path

import torch

import syncopt
from syncopt.models.sources import shipped_weights
from syncopt.models.weights import save_state_dict

# The video projection's first 1x1 convolution: ONNX Runtime quantizes it (a Conv not on a model input),
# TFLite and NNCF (OpenVINO) too, and its input (the video tower's mean) is quantized by no other node.
FRAGILE_NODE = "/video_encoder/projection/projection.0/Conv"


def fragile_fcn(out: Path, gain: float = 1e3) -> Path:
    """Write the shipped tiny fcn with a mis-scaled weight column and return the weights file.

    Channel 0 of the video tower's last block is silenced (its BatchNorm scale and shift set to 0, so
    after ReLU it is exactly 0), and the projection's weights reading that channel are set to ``gain``
    times the largest weight. The fp32 model ignores them (0 x w), but per-channel INT8 gives every
    output channel of that convolution a scale ``gain`` times too coarse for its real weights, which
    round to zero: that one node wrecks INT8, and nothing else changes.
    """
    model = syncopt.create("fcn", "tiny", weights=shipped_weights("fcn", "tiny"))
    features, projection = model.video_encoder.features, model.video_encoder.projection[0]
    norm = [m for m in features if isinstance(m, torch.nn.BatchNorm3d)][-1]
    with torch.no_grad():
        norm.weight[0] = 0.0
        norm.bias[0] = 0.0
        projection.weight[:, 0] = gain * projection.weight.abs().max()
    out.mkdir(parents=True, exist_ok=True)
    return save_state_dict(model, out / "fcn_tiny_fragile.safetensors")
