"""ModelSpec: the single description of a model's inputs, outputs and preprocessing.

Exporters, runtimes, parity, benchmarks and bundles learn everything about a model's IO from
its spec: tensor names, symbolic shapes, dtypes, layouts, dynamic axes and the preprocessing
constants (fps, sample rate, MFCC layout, crop, pixel normalisation).

Shapes mix fixed sizes and symbolic expressions over named dimensions: ``"B"`` (batch),
``"T"`` (video frames), and affine forms such as ``"4*T"`` (MFCC steps) or ``"T-4"``
(windows of a 5-frame model). Every symbolic dimension is dynamic.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncopt.core.errors import ClipTooShortError, InputSpecError

if TYPE_CHECKING:  # torch is imported where tensors are made or checked: the face pipeline reads specs without it
    import torch

Dim = int | str
_AFFINE = re.compile(r"^\s*(?:(\d+)\s*\*\s*)?([A-Za-z_]\w*)\s*(?:([+-])\s*(\d+))?\s*$")
EMBEDDINGS = ("video_emb", "audio_emb")  # per-frame embedding outputs (channels along axis 1)


def parse_dim(expr: str) -> tuple[int, str, int]:
    """Split ``"k*NAME+c"`` into ``(k, NAME, c)``; ``"T"`` is ``(1, "T", 0)``."""
    match = _AFFINE.match(expr)
    if match is None:
        raise ValueError(f"dimension {expr!r} is not of the form 'k*NAME+c'")
    scale, name, sign, const = match.groups()
    offset = int(const or 0) * (-1 if sign == "-" else 1)
    return int(scale or 1), name, offset


def resolve_dim(dim: Dim, sizes: dict[str, int]) -> int:
    """The concrete size of ``dim`` given sizes of the named dimensions."""
    if isinstance(dim, int):
        return dim
    scale, name, offset = parse_dim(dim)
    if name not in sizes:
        raise KeyError(f"no size given for dimension {name!r}")
    return scale * sizes[name] + offset


class TensorSpec(BaseModel):
    """One named input or output tensor."""

    model_config = ConfigDict(frozen=True)

    name: str
    shape: tuple[Dim, ...]
    dtype: Literal["float32", "float16", "int64", "uint8"] = "float32"
    layout: str = Field(description="axis letters, e.g. NCTHW (video), NCFT (MFCC), NCT (per-frame)")
    description: str = ""
    value_range: tuple[float, float] | None = Field(
        default=None, description="range of valid values; example inputs are drawn uniformly from it"
    )

    def concrete_shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """The shape with every symbolic dimension resolved."""
        return tuple(resolve_dim(d, sizes) for d in self.shape)

    def dynamic_axes(self) -> dict[int, str]:
        """Axis index -> symbolic name, as ``torch.onnx.export(dynamic_axes=...)`` expects."""
        return {i: d.replace(" ", "") for i, d in enumerate(self.shape) if isinstance(d, str)}


class MfccConfig(BaseModel):
    """SyncNet's MFCC, as python_speech_features.mfcc computes it by default (the original pipeline,
    joonson/syncnet_python): the one description that media decoding, streaming and bundles read."""

    model_config = ConfigDict(frozen=True)

    window_ms: float = 25.0
    hop_ms: float = 10.0
    nfft: int = 512
    mel_filters: int = 26
    coefficients: int = 13
    pre_emphasis: float = 0.97
    lifter: int = 22
    c0: str = "log frame energy"
    input_scale: float = Field(32768.0, description="float audio x 32768: the int16 PCM the original reads")

    def window(self, sample_rate: int) -> int:
        """Samples per analysis window."""
        return int(round(self.window_ms * sample_rate / 1000))

    def hop(self, sample_rate: int) -> int:
        """Samples between columns."""
        return int(round(self.hop_ms * sample_rate / 1000))

    @property
    def per_second(self) -> float:
        return 1000.0 / self.hop_ms


MFCC = MfccConfig()


class Preprocessing(BaseModel):
    """How raw media becomes the model's input tensors."""

    model_config = ConfigDict(frozen=True)

    fps: float = 25.0
    sample_rate: int = 16000
    audio_features: Literal["mfcc", "waveform"] = "mfcc"
    num_mfcc: int = 13
    mfcc_per_frame: int = 4
    crop_size: int = Field(description="square face crop side in pixels (0: the model reads no pixels)")
    video_features: Literal["crops", "lips"] = Field(
        "crops", description="face crops, or face-mesh lip motion (syncopt.data.lipfeatures.lip_motion)")
    audio_norm: Literal["none", "clip"] = Field("none", description="MFCC normalised over the clip per coefficient")
    channel_order: Literal["rgb", "bgr"] = "rgb"
    pixel_mean: float = Field(0.0, description="frames enter as (pixel - mean) / std, pixels in 0..255")
    pixel_std: float = 1.0

    @property
    def audio_per_frame(self) -> int:
        """Audio steps per video frame on the model's audio time axis: MFCC columns, or samples."""
        if self.audio_features == "mfcc":
            return self.mfcc_per_frame
        return round(self.sample_rate / self.fps)


class ModelSpec(BaseModel):
    """Everything later stages need to know about a model's IO."""

    model_config = ConfigDict(frozen=True)

    name: str
    preset: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: Preprocessing
    min_frames: int = Field(description="receptive field: the shortest clip the model accepts, in frames")
    context_frames: int = Field(0, description="frames on each side that one output frame depends on "
                                               "(beyond which chunked inference is exact)")
    standard_frames: int = Field(25, description="clip length used for MAC counts and benchmarks")
    max_offset: int = Field(description="offsets -K..K frames are scored")
    timeline_frames: int = Field(1, ge=1, description="frames whose offset log-probabilities the per-frame "
                                                       "timeline pools (centred), for models whose single frames "
                                                       "say little (1: each frame alone)")
    max_frames: int | None = Field(None, description="longest clip one forward pass accepts (e.g. Whisper's "
                                                     "30 s of positions); longer clips run in chunks")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def sizes(self, frames: int | None = None, batch: int = 1) -> dict[str, int]:
        """Named dimension sizes for a clip of ``frames`` video frames."""
        return {"B": batch, "T": self.standard_frames if frames is None else frames}

    def example_inputs(self, T: int | None = None, batch: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
        """Random named inputs of the right shapes, dtypes and value ranges (reproducible by seed)."""
        import torch

        sizes = self.sizes(T, batch)
        self.check_length(sizes["T"])
        gen = torch.Generator().manual_seed(seed)
        feeds = {}
        for t in self.inputs:
            shape = t.concrete_shape(sizes)
            if t.value_range is None:
                x = torch.randn(shape, generator=gen)
            else:
                lo, hi = t.value_range
                x = lo + (hi - lo) * torch.rand(shape, generator=gen)
            feeds[t.name] = x.to(getattr(torch, t.dtype))
        return feeds

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Dynamic axes of every input and output, keyed by tensor name."""
        return {t.name: t.dynamic_axes() for t in (*self.inputs, *self.outputs)}

    def check_length(self, frames: int) -> None:
        """Raise :class:`ClipTooShortError` when ``frames`` is below the receptive field."""
        if frames < self.min_frames:
            raise ClipTooShortError(
                f"{self.name}: clip of {frames} frames is shorter than the model's receptive field "
                f"of {self.min_frames} frames ({self.min_frames / self.preprocessing.fps:.2f} s)"
            )

    def check_one_pass(self, frames: int) -> None:
        """Raise :class:`InputSpecError` when ``frames`` exceed what one forward pass accepts."""
        if self.max_frames is not None and frames > self.max_frames:
            raise InputSpecError(f"{self.name}: {frames} frames exceed the {self.max_frames} one pass "
                                 f"accepts; run longer clips in chunks (syncopt.inference.infer.run_dense)")

    def infer_sizes(self, feeds: dict[str, torch.Tensor]) -> dict[str, int]:
        """Solve the named dimensions from tensors fed by name (first occurrence wins)."""
        sizes: dict[str, int] = {}
        for t in self.inputs:
            if t.name not in feeds:
                continue
            for dim, actual in zip(t.shape, feeds[t.name].shape):
                if isinstance(dim, str):
                    scale, name, offset = parse_dim(dim)
                    if name not in sizes and (actual - offset) % scale == 0:
                        sizes[name] = (actual - offset) // scale
        return sizes

    def validate_inputs(self, feeds: dict[str, torch.Tensor]) -> dict[str, int]:
        """Check names, ranks, shapes, dtypes and finiteness; return the solved dimension sizes.

        Raises :class:`InputSpecError` naming the first problem found.
        """
        import torch

        expected, given = set(self.input_names), set(feeds)
        if expected != given:
            raise InputSpecError(
                f"{self.name}: inputs {sorted(given)} do not match the spec's {sorted(expected)}"
            )
        sizes = self.infer_sizes(feeds)
        for t in self.inputs:
            x = feeds[t.name]
            if not isinstance(x, torch.Tensor):
                raise InputSpecError(f"{self.name}: input '{t.name}' is {type(x).__name__}, not a tensor")
            if x.dtype != getattr(torch, t.dtype):
                raise InputSpecError(f"{self.name}: input '{t.name}' has dtype {x.dtype}, expected {t.dtype}")
            want = tuple(_expected_size(d, sizes) for d in t.shape)
            if x.dim() != len(t.shape) or any(w is None or w != a for w, a in zip(want, x.shape)):
                raise InputSpecError(
                    f"{self.name}: input '{t.name}' has shape {tuple(x.shape)}, expected "
                    f"({', '.join(map(str, t.shape))}) with {sizes}"
                )
            if x.is_floating_point() and not _all_finite(x):
                raise InputSpecError(f"{self.name}: input '{t.name}' contains NaN or Inf")
        if "T" in sizes:
            self.check_length(sizes["T"])
            self.check_one_pass(sizes["T"])
        return sizes

    def macs_note(self) -> str:
        """Human-readable description of the standard input used for MAC counts."""
        seconds = self.standard_frames / self.preprocessing.fps
        return f"batch 1, {self.standard_frames} frames ({seconds:g} s)"


def _expected_size(dim: Dim, sizes: dict[str, int]) -> int | None:
    """The size ``dim`` must have, or None when its named dimension could not be solved."""
    if isinstance(dim, str) and parse_dim(dim)[1] not in sizes:
        return None
    return resolve_dim(dim, sizes)


def _all_finite(x: torch.Tensor) -> bool:
    """Whether every element of ``x`` is finite: one sum (a NaN or an Inf makes it NaN or Inf), and the
    element-wise test only where the sum overflowed (on a 10 s 96x96 clip 0.7-1.7 ms against 15). A float32
    or float64 tensor is summed by numpy on the calling thread, which keeps torch's thread pool out of the
    way of the runtime session that runs next."""
    import numpy as np
    import torch

    if x.dtype in (torch.float32, torch.float64):
        a = x.detach().numpy()
        with np.errstate(over="ignore", invalid="ignore"):
            return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())
