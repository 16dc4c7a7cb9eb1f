"""``fcn_causal``: a streaming FCN student with causal time axes and a bounded look-ahead.

Towers: every frame's face crop goes through a 2D CNN (time folded into the batch, as in the
``mobile_2d`` student, so it lowers to INT8 TFLite builtins), is averaged over space, then mixed
over time by *causal* 1-D convolutions (left padding only). The audio tower folds each frame's
4 MFCC columns into 52 channels and applies causal 1-D convolutions too. Embedding ``t`` thus
depends on frames ``<= t`` only.

Correlation with look-ahead ``L``: offset ``o`` pairs video ``t`` with audio ``t - o``; for
``o < -L`` that audio lies more than ``L`` frames in the future, so the pair is taken
``-(o + L)`` frames earlier instead::

    corr[o, t] = <v[t + min(0, o + L)], a[t + min(0, o + L) - o]>

Every pair then uses inputs at most ``L`` frames after ``t`` (``L = K`` is the offline
correlation). The predictor's convolutions are causal as well, so output ``t`` depends on inputs
``<= t + L``: a stream emits frame ``t`` once frame ``t + L`` has arrived.

:meth:`CausalSync.step` is the streaming form: it consumes ``N`` new frames with explicit state
tensors (each causal layer's last inputs, the embedding histories) and returns the outputs of
frames ``t - L`` plus the new state. Over consecutive chunks it reproduces :meth:`forward` on the
whole clip; :class:`StreamStep` wraps it with a spec for export (state as graph inputs/outputs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from syncopt.core.spec import ModelSpec, TensorSpec
from syncopt.models.fcn import two_tower_spec
from syncopt.models.layers import shift_time
from syncopt.models.registry import register_model


@dataclass(frozen=True)
class CausalConfig:
    """Widths and kernels of the causal towers (configs as data; presets below)."""

    crop_size: int
    frame_widths: tuple[int, ...]  # per-frame Conv2d stack; each halves H and W
    video_kernels: tuple[int, ...]  # causal temporal convs after spatial pooling
    audio_widths: tuple[int, ...]  # causal Conv1d stack over the folded MFCC
    audio_kernel: int
    hidden: int
    embed_dim: int
    max_offset: int = 15
    lookahead: int = 2
    predictor_hidden: int = 32
    predictor_kernel: int = 5

    @property
    def history(self) -> int:
        """Frames of past input one output depends on (through towers, correlation and predictor)."""
        video = sum(k - 1 for k in self.video_kernels)
        audio = (self.audio_kernel - 1) * len(self.audio_widths)
        lag = max(self.lookahead, self.max_offset) + max(video, audio) + self.max_offset + self.lookahead
        return lag + 2 * (self.predictor_kernel - 1)


PRESETS = {
    "tiny": CausalConfig(48, frame_widths=(8, 16, 32, 32), video_kernels=(3, 3), audio_widths=(32, 32, 32),
                         audio_kernel=3, hidden=64, embed_dim=32),
    "full": CausalConfig(112, frame_widths=(32, 64, 128, 256, 512), video_kernels=(3, 3, 3),
                         audio_widths=(128, 256, 256, 512), audio_kernel=3, hidden=512, embed_dim=512,
                         predictor_hidden=64),
}


class CausalConv1d(nn.Conv1d):
    """``Conv1d`` padded on the left only: output ``t`` sees inputs ``t - k + 1 .. t``."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(cin, cout, kernel)
        self.memory = kernel - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.memory, 0)))

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, N)`` after ``state (B, C, k-1)``, the previous inputs -> output, new state."""
        buf = torch.cat([state, x], dim=-1)
        return super().forward(buf), buf[..., buf.shape[-1] - self.memory:]


class CausalStack(nn.Sequential):
    """A sequence of causal convolutions and per-frame layers, run whole or chunk by chunk."""

    def state_shapes(self) -> list[tuple[int, int]]:
        """``(channels, frames)`` of each causal layer's state, in order."""
        return [(m.in_channels, m.memory) for m in self if isinstance(m, CausalConv1d) and m.memory]

    def step(self, x: torch.Tensor, states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        new, i = [], 0
        for m in self:
            if isinstance(m, CausalConv1d) and m.memory:
                x, s = m.step(x, states[i])
                new.append(s)
                i += 1
            else:
                x = m(x)
        return x, new


def _causal_block(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [CausalConv1d(cin, cout, kernel), nn.BatchNorm1d(cout), nn.ReLU()]


def _projection(width: int, hidden: int, out: int) -> list[nn.Module]:
    return [nn.Conv1d(width, hidden, 1), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Conv1d(hidden, out, 1)]


class FrameEncoder(nn.Module):
    """``(B, 3, T, S, S)`` -> ``(B, C, T)``: a 2D CNN on every frame, averaged over space."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(widths):
            k = 7 if i == 0 else 3
            layers += [nn.Conv2d(cin, cout, k, stride=2, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        x = self.layers(video.transpose(1, 2).reshape(b * t, c, h, w)).mean(dim=(2, 3))
        return x.reshape(b, t, -1).transpose(1, 2)


def fold_mfcc(audio: torch.Tensor, per_frame: int = 4) -> torch.Tensor:
    """``(B, 1, F, per_frame*T)`` MFCC -> ``(B, F*per_frame, T)``: each frame's columns as channels."""
    b, _, f, n = audio.shape
    return audio.reshape(b, f, n // per_frame, per_frame).permute(0, 1, 3, 2).reshape(b, f * per_frame, n // per_frame)


class CausalSync(nn.Module):
    """Dense causal sync model with the outputs of ``TwoTowerSync`` (see the module docstring)."""

    def __init__(self, spec: ModelSpec, cfg: CausalConfig) -> None:
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.max_offset, self.lookahead = cfg.max_offset, cfg.lookahead
        pre = spec.preprocessing
        self.per_frame = pre.mfcc_per_frame
        self.frames = FrameEncoder(cfg.frame_widths)
        video: list[nn.Module] = []
        cin = self.frames.out_channels
        for k in cfg.video_kernels:
            video += _causal_block(cin, cin, k)
        self.video = CausalStack(*video, *_projection(cin, cfg.hidden, cfg.embed_dim))
        audio: list[nn.Module] = []
        cin = pre.num_mfcc * pre.mfcc_per_frame
        for w in cfg.audio_widths:
            audio += _causal_block(cin, w, cfg.audio_kernel)
            cin = w
        self.audio = CausalStack(*audio, *_projection(cin, cfg.hidden, cfg.embed_dim))
        n, h, k = 2 * cfg.max_offset + 1, cfg.predictor_hidden, cfg.predictor_kernel
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.refine = CausalStack(CausalConv1d(n, h, k), nn.ReLU(), CausalConv1d(h, h, k), nn.ReLU(),
                                  nn.Conv1d(h, n + 1, 1))
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    # ------------------------------------------------------------------ offline

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self.video(self.frames(video))
        a = self.audio(fold_mfcc(audio, self.per_frame))
        vn, an = F.normalize(v, dim=1, eps=1e-6), F.normalize(a, dim=1, eps=1e-6)
        k, la = self.max_offset, self.lookahead
        corr = torch.stack([(shift_time(vn, max(0, -o - la)) * shift_time(an, max(o, -la))).sum(1)
                            for o in range(-k, k + 1)], dim=1)
        # A stream emits L frames before frame 0 (their correlation is 0) that the predictor's
        # state has seen; the same zero frames lead the offline predictor's input.
        out = self._predict(F.pad(corr, (la, 0)), None)[0]
        return {"video_emb": v, "audio_emb": a, "correlation": corr} | {n: x[..., la:] for n, x in out.items()}

    def _predict(self, corr: torch.Tensor, states: list[torch.Tensor] | None
                 ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        if states is None:
            refined, new = self.refine(corr), []
        else:
            refined, new = self.refine.step(corr, states)
        return {"offset_logits": self.scale * corr + refined[:, :-1], "sync_prob": torch.sigmoid(refined[:, -1])}, new

    # ------------------------------------------------------------------ streaming

    @property
    def history_frames(self) -> tuple[int, int]:
        """Normalised embeddings kept between chunks: ``(video, audio)`` frames."""
        return max(self.lookahead, self.max_offset), self.lookahead + self.max_offset

    def state_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every streaming state tensor."""
        shapes: dict[str, tuple[int, ...]] = {}
        for tower, stack in (("video", self.video), ("audio", self.audio), ("predictor", self.refine)):
            for i, (c, n) in enumerate(stack.state_shapes()):
                shapes[f"{tower}_conv{i}"] = (batch, c, n)
        hv, ha = self.history_frames
        shapes["video_history"] = (batch, self.cfg.embed_dim, hv)
        shapes["audio_history"] = (batch, self.cfg.embed_dim, ha)
        return shapes

    def initial_state(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """All-zero state: the stream's start, equal to the offline model's zero padding."""
        return {name: torch.zeros(shape) for name, shape in self.state_shapes(batch).items()}

    def step(self, video: torch.Tensor, audio: torch.Tensor, valid: torch.Tensor,
             state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Consume ``N`` frames (``video (B,3,N,S,S)``, ``audio (B,1,13,4N)``, ``valid (B,N)``: 0 marks
        padding past the clip's end) -> outputs ``offset_logits (B,2K+1,N)``, ``sync_prob (B,N)`` of
        frames ``t - L`` for the ``N`` new frames ``t``, and the new state."""
        n = video.shape[2]
        names = list(self.state_shapes())
        groups = {tower: [state[k] for k in names if k.startswith(tower + "_conv")]
                  for tower in ("video", "audio", "predictor")}
        v, sv = self.video.step(self.frames(video), groups["video"])
        a, sa = self.audio.step(fold_mfcc(audio, self.per_frame), groups["audio"])
        mask = valid[:, None, :]
        vbuf = torch.cat([state["video_history"], F.normalize(v, dim=1, eps=1e-6) * mask], dim=-1)
        abuf = torch.cat([state["audio_history"], F.normalize(a, dim=1, eps=1e-6) * mask], dim=-1)
        hv, ha = self.history_frames
        k, la = self.max_offset, self.lookahead
        pairs = []
        for o in range(-k, k + 1):
            lv, lag_a = max(la, -o), max(la + o, 0)
            pairs.append((vbuf[..., hv - lv:hv - lv + n] * abuf[..., ha - lag_a:ha - lag_a + n]).sum(1))
        # Stacked last, then transposed: onnx2tf keeps that in the state's channel-first layout
        # (stacking on dim 1 comes out channels-last and cannot join the predictor's state).
        outputs, sp = self._predict(torch.stack(pairs, dim=-1).transpose(1, 2), groups["predictor"])
        new = dict(zip(names, [*sv, *sa, *sp, vbuf[..., vbuf.shape[-1] - hv:], abuf[..., abuf.shape[-1] - ha:]]))
        return outputs, new


class StreamStep(nn.Module):
    """:meth:`CausalSync.step` for a fixed chunk of ``frames``, with flat named tensors and a spec
    (state as explicit inputs ``<name>`` and outputs ``<name>_out``) for ONNX/TFLite export."""

    def __init__(self, model: CausalSync, frames: int) -> None:
        super().__init__()
        self.model, self.frames = model, frames
        self.state_names = list(model.state_shapes())
        self.spec = stream_spec(model, frames)
        # The ONNX tracer binds keyword inputs by the forward's signature: name every state there.
        self.forward = _with_signature(self._step, self.spec.input_names)

    def _step(self, video: torch.Tensor, audio: torch.Tensor, valid: torch.Tensor, *states: torch.Tensor,
              **named: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs, new = self.model.step(video, audio, valid, dict(zip(self.state_names, states)) | named)
        return outputs | {f"{name}_out": new[name] for name in self.state_names}


def _with_signature(fn: Callable[..., dict[str, torch.Tensor]], names: list[str]) -> Callable[..., dict[str, torch.Tensor]]:
    def forward(*args: torch.Tensor, **kwargs: torch.Tensor) -> dict[str, torch.Tensor]:
        return fn(*args, **kwargs)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    forward.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in names])  # type: ignore[attr-defined]
    return forward


def stream_spec(model: CausalSync, frames: int) -> ModelSpec:
    """The spec of one streaming step of ``frames`` frames at batch 1 (all shapes fixed)."""
    spec, k = model.spec, model.max_offset
    pre = spec.preprocessing
    s = pre.crop_size
    states = [TensorSpec(name=name, shape=shape, layout="NCT", description="streaming state")
              for name, shape in model.state_shapes(1).items()]
    return ModelSpec(
        name=f"{spec.name}_stream{frames}", preset=spec.preset,
        inputs=(TensorSpec(name="video", shape=(1, 3, frames, s, s), layout="NCTHW", value_range=(-1.0, 1.0),
                           description="the chunk's face crops, normalised as the model's video input"),
                TensorSpec(name="audio", shape=(1, 1, pre.num_mfcc, pre.mfcc_per_frame * frames), layout="NCFT",
                           description="the chunk's MFCC, 4 columns per frame"),
                TensorSpec(name="valid", shape=(1, frames), layout="NT", value_range=(1.0, 1.0),
                           description="1 for real frames, 0 for the padding that flushes the look-ahead"),
                *states),
        outputs=(TensorSpec(name="offset_logits", shape=(1, 2 * k + 1, frames), layout="NCT",
                            description=f"for frames t-{model.lookahead}"),
                 TensorSpec(name="sync_prob", shape=(1, frames), layout="NT", value_range=(0.0, 1.0)),
                 *(t.model_copy(update={"name": f"{t.name}_out"}) for t in states)),
        preprocessing=pre, min_frames=1, context_frames=spec.context_frames, standard_frames=frames,
        max_offset=k,
    )


def build_causal(name: str, preset: str) -> CausalSync:
    cfg = PRESETS[preset]
    spec = two_tower_spec(name, preset, cfg.crop_size, cfg.embed_dim, cfg.max_offset, min_frames=1,
                          context_frames=cfg.history)
    return CausalSync(spec, cfg)


@register_model("fcn_causal", "streaming FCN: causal towers and predictor, look-ahead of 2 frames (80 ms)")
def build_fcn_causal(preset: str) -> CausalSync:
    return build_causal("fcn_causal", preset)

