"""Calibrated confidence: temperature scaling of the in-sync and offset probabilities, expected
calibration error, and an uncertainty flag for sync results.

Temperature scaling and ECE follow Guo et al., "On Calibration of Modern Neural Networks"
(ICML 2017): one scalar ``T > 0`` divides the logits and is fit by minimising the negative
log-likelihood on a validation split (the argmax, hence accuracy, is unchanged); ECE is
``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over 15 equal-width confidence bins of the
predicted class. The in-sync head is binary, so its logit is ``logit(sync_prob)`` and its
confidence ``max(p, 1 - p)``.

A clip's *offset probability* is the calibrated per-frame probability of the clip's decided
offset, averaged over the frames whose audio partner lies inside the clip: the expected
fraction of those frames that agree with it. A track is *uncertain* when it is below
``uncertain_below``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, ValidationError
from torch import nn

from syncopt.core.atomic import atomic_path, sha256_file
from syncopt.core.errors import InputFileError, UsageError
from syncopt.models.decode import SyncResult

ECE_BINS = 15
# The best separation of right answers from mismatched audio on the real development clips
# (benchmarks/bench_uncertainty.py --dev benchmarks/realclips/dev_plus.csv, the shipped fcn_lips); clean
# synthetic clips score >= 0.6, clips with noise for audio <= 0.25.
UNCERTAIN_BELOW = 0.52
REFERENCE = "Guo et al., On Calibration of Modern Neural Networks, ICML 2017"


class ECE(BaseModel):
    """Expected calibration error before and after scaling, on the same samples."""

    before: float
    after: float


class Calibration(BaseModel):
    """Temperatures for one model's weights, with the held-out figures that justify them."""

    model: str
    preset: str
    weights: str
    weights_sha256: str | None = Field(None, description="sha256 of the weights the temperatures were fit for")
    sync_temperature: float = Field(gt=0, description="divides the in-sync logit")
    offset_temperature: float = Field(gt=0, description="divides the offset logits")
    uncertain_below: float = Field(UNCERTAIN_BELOW, description="flag tracks whose offset probability is lower")
    fit_clips: int = Field(description="synthetic validation clips the temperatures were fit on")
    test_clips: int = Field(description="held-out synthetic test clips the ECE figures come from")
    frames: int
    sync_ece: ECE = Field(description="in-sync probability, per frame, held-out test split")
    offset_ece: ECE = Field(description="per-frame offset probability, held-out test split")
    bins: int = ECE_BINS
    reference: str = REFERENCE


@dataclass(frozen=True)
class Samples:
    """Per-frame logits and targets on the usable frames of labelled clips."""

    sync_logit: torch.Tensor  # (N,) float64
    in_sync: torch.Tensor  # (N,) float64, 1 where the label is offset 0
    offset_logits: torch.Tensor  # (N, 2K+1) float64
    offset: torch.Tensor  # (N,) int64 class index (offset + K)


def sync_logit(sync_prob: torch.Tensor) -> torch.Tensor:
    """The in-sync logit recovered from a probability, in float64, within what the probability's
    dtype expresses (smallest normal .. largest value below 1: logits in about -87..17 for float32)."""
    info = torch.finfo(sync_prob.dtype)
    return torch.logit(sync_prob.detach().double().clamp(info.tiny, 1 - info.eps / 2))


def collect(model: nn.Module, dataset) -> Samples:
    """Run ``model`` on a labelled :class:`~syncopt.data.datasets.ClipDataset` and keep its usable frames."""
    from syncopt.training.evaluate import predict

    if "offset_logits" not in model.spec.output_names:
        raise UsageError(f"model '{model.spec.name}' gives no offset logits to calibrate")
    return samples(predict(model, dataset))


def samples(outputs: list[dict[str, torch.Tensor]]) -> Samples:
    """:class:`Samples` from :func:`syncopt.training.evaluate.predict`'s per-clip outputs and labels."""
    from syncopt.training.losses import usable_frames

    k = outputs[0]["offset_logits"].shape[0] // 2
    parts: dict[str, list[torch.Tensor]] = {"s": [], "y": [], "o": [], "c": []}
    for out in outputs:
        mask = usable_frames(out["labels"][None], out["valid"][None])[0]
        labels = out["labels"][mask]
        parts["s"].append(sync_logit(out["sync_prob"][mask]))
        parts["y"].append((labels == 0).double())
        parts["o"].append(out["offset_logits"][:, mask].T.double())
        parts["c"].append(labels + k)
    s, y, o, c = (torch.cat(parts[key]) for key in "syoc")
    return Samples(sync_logit=s, in_sync=y, offset_logits=o, offset=c)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """``T`` minimising the NLL of ``logits / T``: binary when ``logits`` is 1-D (targets 0/1),
    multiclass when it is ``(N, C)`` (targets class indices). LBFGS on ``log T``."""
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _nll(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, targets.double())
    return F.cross_entropy(logits, targets)


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE over ``bins`` equal-width bins ``(b/M, (b+1)/M]`` of top-label confidence (Guo et al. 2017, eq. 3)."""
    confidence, correct = confidence.double(), correct.double()
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    total = torch.zeros((), dtype=torch.float64)
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            total += in_bin.double().mean() * (confidence[in_bin].mean() - correct[in_bin].mean()).abs()
    return float(total)


def sync_ece(logit: torch.Tensor, in_sync: torch.Tensor, temperature: float = 1.0) -> float:
    """ECE of the binary in-sync prediction at ``temperature``."""
    p = torch.sigmoid(logit / temperature)
    return expected_calibration_error(torch.maximum(p, 1 - p), (p > 0.5).double() == in_sync)


def offset_ece(logits: torch.Tensor, offset: torch.Tensor, temperature: float = 1.0) -> float:
    """ECE of the per-frame offset prediction at ``temperature``."""
    confidence, predicted = torch.softmax(logits / temperature, dim=1).max(1)
    return expected_calibration_error(confidence, predicted == offset)


def fit_calibration(val: Samples, test: Samples, model: str, preset: str, weights: str, fit_clips: int,
                    test_clips: int, frames: int, uncertain_below: float = UNCERTAIN_BELOW) -> Calibration:
    """Fit both temperatures on ``val``; report ECE before and after on ``test``."""
    t_sync = fit_temperature(val.sync_logit, val.in_sync)
    t_off = fit_temperature(val.offset_logits, val.offset)
    return Calibration(
        model=model, preset=preset, weights=weights,
        weights_sha256=sha256_file(weights) if Path(weights).is_file() else None,
        sync_temperature=t_sync, offset_temperature=t_off, uncertain_below=uncertain_below,
        fit_clips=fit_clips, test_clips=test_clips, frames=frames,
        sync_ece=ECE(before=sync_ece(test.sync_logit, test.in_sync),
                     after=sync_ece(test.sync_logit, test.in_sync, t_sync)),
        offset_ece=ECE(before=offset_ece(test.offset_logits, test.offset),
                       after=offset_ece(test.offset_logits, test.offset, t_off)),
    )


def calibrate_model(model: nn.Module, weights: str, clips: int = 200, frames: int = 50,
                    uncertain_below: float = UNCERTAIN_BELOW) -> Calibration:
    """Fit on ``clips`` synthetic validation clips, measure on as many held-out test clips."""
    from syncopt.core.log import status
    from syncopt.data.datasets import synth_dataset

    spec = model.spec
    samples = {}
    for split in ("val", "test"):
        status(f"{split}: {clips} synthetic clips of {frames} frames")
        samples[split] = collect(model, synth_dataset(spec, split, clips, frames))
    return fit_calibration(samples["val"], samples["test"], spec.name, spec.preset, weights, clips, clips, frames,
                           uncertain_below)


def default_path(weights: str | os.PathLike, synthetic: bool) -> Path:
    """Where a calibration for ``weights`` lives: ``calibration.json`` in a run directory,
    ``<weights>.calibration.json`` beside any other weights file, ``./calibration.json`` for the
    weights shipped inside the package."""
    w = Path(weights)
    if synthetic:
        return Path("calibration.json")
    if (w.parent / "config.json").is_file():
        return w.parent / "calibration.json"
    return w.with_suffix(".calibration.json")


def save_calibration(calibration: Calibration, path: str | os.PathLike) -> Path:
    """Write ``calibration`` as JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(calibration.model_dump_json(indent=2) + "\n")
    return Path(path)


def find_calibration(weights: str | os.PathLike, synthetic: bool) -> str | None:
    """The calibration that applies to ``weights`` by itself: the file at :func:`default_path`, when it
    exists and the weights are not the package's synthetic-data ones."""
    path = None if synthetic else default_path(weights, synthetic)
    return str(path) if path is not None and path.is_file() else None


def load_calibration(path: str | os.PathLike, spec=None, weights: str | None = None) -> Calibration:
    """Read a calibration file; with ``spec``/``weights``, check it was fit for that model and weights."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"calibration file not found: {p}")
    try:
        calibration = Calibration.model_validate(json.loads(p.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"{p.name} is not a syncopt calibration file ({first})") from exc
    if spec is not None and (calibration.model, calibration.preset) != (spec.name, spec.preset):
        raise UsageError(f"{p.name} was fit for {calibration.model}/{calibration.preset}, "
                         f"not {spec.name}/{spec.preset}")
    if weights is not None and calibration.weights_sha256 and Path(weights).is_file() \
            and sha256_file(weights) != calibration.weights_sha256:
        raise UsageError(f"{p.name} was fit for other weights ({calibration.weights}); rerun syncopt calibrate")
    return calibration


def offset_probability(offset_logits: torch.Tensor, offset: int, temperature: float = 1.0,
                       timeline_frames: int = 1) -> float:
    """Mean tempered probability of ``offset`` over the frames of ``offset_logits (2K+1, T)``
    whose audio partner ``t - offset`` lies in the clip (all frames if none does); with
    ``timeline_frames`` > 1, each frame's probability pools that many frames' evidence around it
    (:func:`~syncopt.models.decode.pooled_log_probs`), so it reads as the share of such windows
    that agree with the clip offset."""
    from syncopt.models.decode import pooled_log_probs

    k, t_len = offset_logits.shape[0] // 2, offset_logits.shape[1]
    p = torch.softmax(pooled_log_probs(offset_logits, timeline_frames, temperature), dim=0)[offset + k]
    t = torch.arange(t_len)
    inside = (t - offset >= 0) & (t - offset < t_len)
    return float(p[inside].mean() if inside.any() else p.mean())


def apply_calibration(outputs: dict[str, torch.Tensor], result: SyncResult, calibration: Calibration | None,
                      timeline_frames: int = 1) -> tuple[SyncResult, float | None, bool | None]:
    """``(result with calibrated per-frame in-sync probabilities, offset probability, uncertain)``
    for one clip's dense ``outputs`` (batch axis 1); without a calibration, temperatures are 1.
    Models without offset logits (SyncNet) give ``(result, None, None)``."""
    if "offset_logits" not in outputs:
        return result, None, None
    t_off = calibration.offset_temperature if calibration else 1.0
    threshold = calibration.uncertain_below if calibration else UNCERTAIN_BELOW
    prob = offset_probability(outputs["offset_logits"][0], result.offset, t_off, timeline_frames)
    if calibration is not None and result.per_frame_sync_prob is not None:
        calibrated = torch.sigmoid(sync_logit(outputs["sync_prob"][0]) / calibration.sync_temperature)
        result = result.model_copy(update={"per_frame_sync_prob": calibrated.tolist()})
    return result, prob, prob < threshold
