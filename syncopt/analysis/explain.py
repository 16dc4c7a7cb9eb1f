"""``syncopt explain``: where a sync model looks, and, for ``fcn_attn``, which frames it attends to.

Both saliency maps explain the clip's decided offset ``o`` through its score
``S = mean_t log_softmax(offset_logits)[o, t]`` (the quantity :func:`syncopt.models.decode.decode_dense`
maximises), per frame since the towers keep time, each frame's map scaled to a maximum of 1:

- *Grad-CAM* (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization", ICCV 2017): with ``A`` the output of the video tower's last
  3-D convolution ``(C, T, h, w)``, frame ``t``'s map is ``ReLU(sum_c alpha_ct A_ct)``, with
  ``alpha_ct`` the spatial mean of ``dS/dA_ct``, bilinearly upsampled over the face crop. The
  tiny models' last map is 3x3, so it is coarse.
- *input gradient* (Simonyan et al., "Deep Inside Convolutional Networks", ICLR workshop 2014):
  ``max_channel |dS/dx|`` at every pixel of the crop.

Attention maps are the weights of every local attention block (each query frame over its
``±radius`` neighbours, per head), recomputed from the block's inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from syncopt.core.atomic import atomic_path
from syncopt.core.errors import UsageError
from syncopt.models.layers import LocalAttention, shift_time

GRID_FRAMES = 32  # frames shown in a saliency grid (evenly spaced over the explained span)


class TrackExplanation(BaseModel):
    """Files written for one face track."""

    track: int
    start_frame: int
    frames: int = Field(description="frames explained, from start_frame")
    offset: int = Field(description="the clip offset whose score is explained")
    score: float = Field(description="mean log-probability of that offset")
    gradcam_png: str
    gradient_png: str
    saliency_npz: str = Field(description="'gradcam' and 'gradient' (T, S, S) float16 in 0..1, 'crops' (T, S, S, 3) uint8")
    attention_png: str | None = None
    attention_gates: dict[str, float] | None = Field(None, description="each block's residual gate (0: no effect)")


class Explanation(BaseModel):
    """``index.json``: what was explained and where the pictures are (paths relative to it)."""

    video: str
    model: str
    preset: str
    weights: str
    synthetic_weights: bool
    method: str = ("per frame: Grad-CAM (Selvaraju et al. 2017) on the video tower's last 3-D convolution, and "
                   "input-gradient saliency (Simonyan et al. 2014), of the decided offset's clip score")
    tracks: list[TrackExplanation]


def last_conv3d(model: nn.Module) -> nn.Conv3d:
    """The video tower's last 3-D convolution (the Grad-CAM layer)."""
    tower = getattr(model, "video_encoder", None)
    convs = [m for m in tower.modules() if isinstance(m, nn.Conv3d)] if tower is not None else []
    if not convs:
        raise UsageError(f"model '{model.spec.name}' has no 3-D convolutional video tower to explain "
                         f"(use fcn or fcn_attn)")
    return convs[-1]


def saliency(model: nn.Module, video: torch.Tensor, audio: torch.Tensor
             ) -> tuple[dict[str, np.ndarray], int, float, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """``({"gradcam", "gradient"}: (T, S, S) maps in 0..1, offset, score, attention inputs by block
    name)`` for one clip ``video (1, 3, T, S, S)``; attention inputs are each LocalAttention's
    (query, context)."""
    model.eval()
    video = video.detach().requires_grad_(True)
    maps: list[torch.Tensor] = []
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [last_conv3d(model).register_forward_hook(lambda _m, _i, out: maps.append(out))]
    for name, module in model.named_modules():
        if isinstance(module, LocalAttention):
            hooks.append(module.register_forward_hook(
                lambda _m, args, _o, name=name: inputs.__setitem__(name, (args[0].detach(), args[-1].detach()))))
    try:
        with torch.enable_grad():
            outputs = model(video=video, audio=audio)
            if "offset_logits" not in outputs:
                raise UsageError(f"model '{model.spec.name}' gives no offset logits to explain")
            logp = torch.log_softmax(outputs["offset_logits"][0], dim=0)
            clip_score = logp.mean(1)
            best = int(clip_score.argmax())
            activation = maps[-1]
            grad, pixels = torch.autograd.grad(clip_score[best], [activation, video])
    finally:
        for hook in hooks:
            hook.remove()
    if activation.dim() != 5 or activation.shape[2] != video.shape[2]:
        raise UsageError(f"model '{model.spec.name}': its last video convolution does not keep one map per frame")
    alpha = grad.mean(dim=(3, 4), keepdim=True)  # (1, C, T, 1, 1)
    cam = F.relu((alpha * activation.detach()).sum(1))[0]  # (T, h, w)
    cam = F.interpolate(cam[:, None], size=video.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    maps = {"gradcam": cam, "gradient": pixels[0].abs().amax(0)}
    k = logp.shape[0] // 2
    return ({name: (m / m.amax((1, 2), keepdim=True).clamp_min(1e-12)).numpy() for name, m in maps.items()},
            best - k, float(clip_score[best].detach()), inputs)


def attention_weights(block: LocalAttention, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """``(B, heads, 2r+1, T)``: weight of key frame ``t + s`` for query frame ``t``, as in
    :meth:`LocalAttention.forward`."""
    b, c, t = query.shape
    h, d = block.heads, c // block.heads
    with torch.no_grad():
        q = block.q(query).reshape(b, h, d, t) / d ** 0.5
        k, _ = block.kv(context).reshape(b, 2, h, d, t).unbind(1)
        valid = torch.ones_like(context[:, :1, :])
        shifts = range(-block.radius, block.radius + 1)
        scores = torch.stack([(q * shift_time(k, s)).sum(2) for s in shifts], dim=2)
        mask = torch.stack([shift_time(valid, s) for s in shifts], dim=2)
        return torch.softmax(scores + (mask - 1.0) * 1e4, dim=2)


def explain_video(path: str | os.PathLike, model: nn.Module, out: str | os.PathLike, weights: str = "",
                  synthetic: bool = False, crop: str = "detect", max_frames: int = 250) -> Explanation:
    """Write saliency grids (and attention maps) for each face track of ``path`` under ``out``,
    and ``out/index.json``; each track's first ``max_frames`` frames are explained."""
    from syncopt.inference.sync import track_inputs

    if max_frames < 1:
        raise UsageError("--frames must be positive")
    spec = model.spec
    per_frame = spec.preprocessing.audio_per_frame
    _, tracks = track_inputs(path, spec, crop)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    explained = []
    for index, (track, crops, video, audio) in enumerate(tracks):
        n = min(max_frames, video.shape[2])
        spec.check_length(n)
        maps, offset, score, inputs = saliency(model, video[:, :, :n], audio[..., :per_frame * n])
        stem = f"track{index}"
        with atomic_path(folder / f"{stem}_saliency.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, crops=crops[:n], **{k: m.astype(np.float16) for k, m in maps.items()})
        for kind, label in (("gradcam", "Grad-CAM"), ("gradient", "input gradient")):
            _plot_saliency(crops[:n], maps[kind], track.start, f"{Path(path).name} track {index}: {label} of "
                           f"offset {offset:+d} (score {score:.2f})", folder / f"{stem}_{kind}.png")
        attention_png = gates = None
        if inputs:
            blocks = dict(model.named_modules())
            maps = {name: attention_weights(blocks[name], *pair)[0].numpy() for name, pair in inputs.items()}
            gates = {name: float(blocks[name].gate.detach()) for name in inputs}
            attention_png = f"{stem}_attention.png"
            _plot_attention(maps, gates, track.start, folder / attention_png)
        explained.append(TrackExplanation(
            track=index, start_frame=track.start, frames=n, offset=offset, score=score,
            gradcam_png=f"{stem}_gradcam.png", gradient_png=f"{stem}_gradient.png",
            saliency_npz=f"{stem}_saliency.npz",
            attention_png=attention_png, attention_gates=gates))
    result = Explanation(video=str(path), model=spec.name, preset=spec.preset, weights=weights,
                         synthetic_weights=synthetic, tracks=explained)
    with atomic_path(folder / "index.json") as tmp:
        tmp.write_text(result.model_dump_json(indent=2) + "\n")
    return result


def _plot_saliency(crops: np.ndarray, cam: np.ndarray, start: int, title: str, path: Path) -> None:
    """A grid of up to :data:`GRID_FRAMES` evenly spaced crops with the saliency overlaid."""
    from syncopt.core.plots import _pyplot, _save

    plt = _pyplot()
    chosen = np.unique(np.linspace(0, len(cam) - 1, min(GRID_FRAMES, len(cam))).round().astype(int))
    cols = min(8, len(chosen))
    rows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, t in zip(axes.flat, chosen):
        ax.imshow(crops[t])
        ax.imshow(cam[t], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"frame {start + t}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def _plot_attention(maps: dict[str, np.ndarray], gates: dict[str, float], start: int, path: Path) -> None:
    """One row per attention block, one panel per head: key offset against query frame."""
    from syncopt.core.plots import _pyplot, _save

    plt = _pyplot()
    heads = max(m.shape[0] for m in maps.values())
    fig, axes = plt.subplots(len(maps), heads, figsize=(3.2 * heads, 1.9 * len(maps) + 0.4), squeeze=False)
    for row, (name, weights) in zip(axes, maps.items()):
        radius = weights.shape[1] // 2
        for head, ax in enumerate(row):
            if head >= weights.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(weights[head], aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest",
                      extent=(start - 0.5, start + weights.shape[2] - 0.5, radius + 0.5, -radius - 0.5))
            ax.set_title(f"{name} head {head} (gate {gates[name]:+.2f})", fontsize=7)
            ax.set_xlabel("query frame", fontsize=7)
            ax.set_ylabel("key offset", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle("local attention weights", fontsize=9)
    _save(fig, path)
