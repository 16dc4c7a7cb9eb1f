"""Evaluation of dense sync models on labelled clips: offset accuracy by context, per-frame
accuracy, in-sync ROC-AUC, LSE-D/LSE-C and temporal IoU of out-of-sync segments.

Definitions:
- *context accuracy* (as in the SyncNet literature): the clip offset is decided from ``L``
  consecutive frames by averaging their per-frame offset log-probabilities; windows are taken
  at stride ``L`` inside the frames whose every candidate partner lies in the clip.
- *LSE-D / LSE-C* (Prajwal et al., Wav2Lip, 2020): SyncNet's min distance and confidence of
  the windowed procedure, averaged over clips; computed here on L2-normalised embeddings.
- *temporal IoU*: frames whose median-filtered per-frame offset differs from the clip's
  decided offset, against frames whose label differs from the clip label.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn
from torch.utils.data import default_collate

from syncopt.data.datasets import ClipDataset
from syncopt.models.decode import median_smooth
from syncopt.training.losses import usable_frames


class EvalReport(BaseModel):
    clips: int
    context_accuracy: dict[int, float]  # L -> exact accuracy
    context_accuracy_pm1: dict[int, float]  # L -> accuracy within +-1 frame
    per_frame_accuracy: float
    per_frame_accuracy_varying: float | None  # on drift / cut-in clips
    sync_auc: float | None
    lse_d: float
    lse_c: float
    segment_iou: float | None


@torch.no_grad()
def predict(model: nn.Module, dataset: ClipDataset, batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """Per-clip outputs (batch axis removed) for every clip of ``dataset``."""
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # quantized models may hold no parameters
    by_length: dict[int, list[int]] = {}  # clips batch with clips of their own length
    for index in range(len(dataset)):
        by_length.setdefault(len(dataset.items[index]["labels"]), []).append(index)
    results: dict[int, dict[str, torch.Tensor]] = {}
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            batch = default_collate([dataset[i] for i in chunk])
            out = {k: v.cpu() for k, v in model(video=batch["video"].to(device), audio=batch["audio"].to(device)).items()}
            for i, index in enumerate(chunk):
                results[index] = {k: v[i] for k, v in out.items()} | {"labels": batch["labels"][i],
                                                                     "valid": batch["valid"][i]}
    return [results[i] for i in range(len(dataset))]


def context_decisions(logp: torch.Tensor, context: int, max_offset: int) -> list[int]:
    """Offsets decided from consecutive ``context``-frame windows of ``logp (2K+1, T)``."""
    t = logp.shape[1]
    lo, hi = max_offset, t - max_offset
    return [int(logp[:, s:s + context].mean(1).argmax()) - max_offset for s in range(lo, hi - context + 1, context)]


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties counted half; None if one class is absent."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def evaluate_outputs(outputs: list[dict[str, torch.Tensor]], offsets: list[int], kinds: list[str],
                     contexts: range = range(5, 16)) -> EvalReport:
    """Metrics from :func:`predict`'s outputs and the clips' labels."""
    from syncopt.models.syncnet import windowed_offset

    k = outputs[0]["offset_logits"].shape[0] // 2
    exact = {c: [] for c in contexts}
    near = {c: [] for c in contexts}
    frame_hits, varying_hits, ious, sync_scores, lse_d, lse_c = [], [], [], [], [], []
    for out, offset, kind in zip(outputs, offsets, kinds):
        logp = torch.log_softmax(out["offset_logits"], 0)
        labels, mask = out["labels"], usable_frames(out["labels"][None], out["valid"][None])[0]
        pred = logp.argmax(0) - k
        hits = (pred == labels)[mask].float().tolist()
        frame_hits += hits
        if kind == "constant":
            for c in contexts:
                decided = np.array(context_decisions(logp, c, k))
                exact[c] += (decided == offset).tolist()
                near[c] += (np.abs(decided - offset) <= 1).tolist()
            interior = slice(k, logp.shape[1] - k)
            sync_scores.append((float(out["sync_prob"][interior].mean()), offset == 0))
        else:
            varying_hits += hits
            ious.append(_segment_iou(pred, labels, mask, logp, k, offset))
        emb = windowed_offset(_unit(out["video_emb"]).T, _unit(out["audio_emb"]).T, vshift=k)
        lse_d.append(emb.min_dist)
        lse_c.append(emb.confidence)
    scores = np.array([s for s, _ in sync_scores]) if sync_scores else np.zeros(0)
    positive = np.array([p for _, p in sync_scores], dtype=bool)
    return EvalReport(
        clips=len(outputs),
        context_accuracy={c: _mean(v) for c, v in exact.items()},
        context_accuracy_pm1={c: _mean(v) for c, v in near.items()},
        per_frame_accuracy=_mean(frame_hits),
        per_frame_accuracy_varying=_mean(varying_hits) if varying_hits else None,
        sync_auc=auc(scores, positive),
        lse_d=_mean(lse_d),
        lse_c=_mean(lse_c),
        segment_iou=_mean(ious) if ious else None,
    )


def evaluate_dataset(model: nn.Module, dataset: ClipDataset, batch_size: int = 16) -> EvalReport:
    """:func:`predict` then :func:`evaluate_outputs` on a labelled dataset."""
    outputs = predict(model, dataset, batch_size)
    return evaluate_outputs(outputs, [it["offset"] for it in dataset.items], [it["kind"] for it in dataset.items])


def _segment_iou(pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, logp: torch.Tensor,
                 k: int, clip_label: int) -> float:
    decided = int(logp[:, mask].mean(1).argmax()) - k if mask.any() else 0
    smooth = median_smooth(pred.numpy().astype(float))
    detected = (smooth != decided) & mask.numpy()
    truth = (labels.numpy() != clip_label) & mask.numpy()
    union = (detected | truth).sum()
    return float((detected & truth).sum() / union) if union else 1.0


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=0)


def _mean(values: list) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
