"""Losses and evaluation metrics on hand-made outputs whose answers are known."""

from __future__ import annotations

import numpy as np
import torch

from syncopt.training.evaluate import auc, context_decisions, evaluate_outputs
from syncopt.training.losses import offset_cross_entropy, sync_losses, usable_frames

K = 3


def _outputs_for(per_frame: torch.Tensor, sharp: float = 8.0) -> dict[str, torch.Tensor]:
    """Fake per-clip outputs whose logits peak at ``per_frame`` offsets."""
    t = per_frame.shape[0]
    logits = torch.zeros(2 * K + 1, t)
    logits[per_frame + K, torch.arange(t)] = sharp
    emb = torch.randn(8, t)
    return {"offset_logits": logits, "correlation": logits / sharp, "sync_prob": (per_frame == 0).float() * 0.8 + 0.1,
            "video_emb": emb, "audio_emb": emb.clone()}


def test_usable_frames_drop_partners_outside_the_clip():
    labels = torch.tensor([[2, 2, 2, 2, 2]])
    valid = torch.ones(1, 5, dtype=torch.bool)
    # frame t pairs with audio t - 2: frames 0 and 1 have no partner
    assert usable_frames(labels, valid).tolist() == [[False, False, True, True, True]]


def test_cross_entropy_is_low_when_right_and_high_when_wrong():
    labels = torch.tensor([[1, 1, 1, 1]])
    mask = torch.ones(1, 4)
    right = torch.full((1, 2 * K + 1, 4), -5.0)
    right[:, 1 + K] = 5.0
    wrong = right.roll(2, dims=1)
    assert offset_cross_entropy(right, labels, mask) < 0.01 < 5 < offset_cross_entropy(wrong, labels, mask)


def test_sync_losses_combine_parts():
    out = _outputs_for(torch.zeros(10, dtype=torch.long))
    batch = {k: v[None] for k, v in out.items()}
    parts = sync_losses(batch, torch.zeros(1, 10, dtype=torch.long), torch.ones(1, 10, dtype=torch.bool))
    assert set(parts) == {"offset", "contrastive", "sync", "loss"}
    expected = parts["offset"] + 0.5 * parts["contrastive"] + 0.2 * parts["sync"]
    torch.testing.assert_close(parts["loss"], expected)


def test_context_decisions_average_noisy_frames():
    t = 40
    logits = torch.zeros(2 * K + 1, t)
    logits[2 + K] = 1.0  # weak evidence for +2 on every frame
    logits[-1 + K, ::3] = 2.5  # strong but sparse votes for -1
    logp = torch.log_softmax(logits, 0)
    assert context_decisions(logp, 1, K)[0] == -1  # frame 3 alone votes -1
    assert set(context_decisions(logp, 9, K)) == {2}


def test_auc_rank_formula():
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    assert auc(scores, np.array([True, True, False, False])) == 1.0
    assert auc(scores, np.array([False, False, True, True])) == 0.0
    assert auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert auc(scores, np.ones(4, dtype=bool)) is None


def test_evaluate_outputs_on_perfect_and_wrong_predictions():
    t = 30
    clips, offsets, kinds = [], [], []
    for offset in (-2, 0, 1, 0):
        labels = torch.full((t,), offset)
        out = _outputs_for(labels)
        clips.append(out | {"labels": labels, "valid": torch.ones(t, dtype=torch.bool)})
        offsets.append(offset)
        kinds.append("constant")
    drift = torch.tensor([0] * 20 + [3] * 10)  # majority offset 0 is the clip label
    clips.append(_outputs_for(drift) | {"labels": drift, "valid": torch.ones(t, dtype=torch.bool)})
    offsets.append(0)
    kinds.append("drift")
    report = evaluate_outputs(clips, offsets, kinds, contexts=range(5, 8))
    assert report.context_accuracy == {5: 1.0, 6: 1.0, 7: 1.0}
    assert report.per_frame_accuracy == 1.0 and report.per_frame_accuracy_varying == 1.0
    assert report.sync_auc == 1.0
    assert report.segment_iou == 1.0
    assert report.lse_d < 1e-3  # identical embeddings at offset 0
    # now every constant clip predicts the wrong offset
    wrong = [c | {"offset_logits": c["offset_logits"].roll(1, dims=0)} if k == "constant" else c
             for c, k in zip(clips, kinds)]
    bad = evaluate_outputs(wrong, offsets, kinds, contexts=range(5, 8))
    assert bad.context_accuracy[5] == 0.0 and bad.context_accuracy_pm1[5] == 1.0


def test_decode_dense_reports_offset_scores_and_short_clips():
    from syncopt.models.decode import decode_dense

    out = _outputs_for(torch.full((4,), -2))
    res = decode_dense(out["offset_logits"], out["sync_prob"])
    assert res.offset == -2 and len(res.offset_scores) == 2 * K + 1
    assert int(np.argmax(res.offset_scores)) - K == -2
    assert len(res.per_frame_confidence) == 4  # median filter shrinks to the clip


def test_pooled_log_probs_sum_a_centred_window_shorter_at_the_ends():
    from syncopt.models.decode import pooled_log_probs

    logits = torch.randn(2 * K + 1, 30, generator=torch.Generator().manual_seed(0))
    logp = torch.log_softmax(logits.double(), dim=0)
    assert torch.allclose(pooled_log_probs(logits, 1), logp)
    pooled = pooled_log_probs(logits, 5, temperature=2.0)
    tempered = torch.log_softmax(logits.double() / 2.0, dim=0)
    for t in (0, 1, 2, 15, 28, 29):
        assert torch.allclose(pooled[:, t], tempered[:, max(0, t - 2):t + 3].sum(1))


def test_a_pooled_timeline_follows_the_window_majority_where_single_frames_are_noisy():
    from syncopt.models.decode import decode_dense

    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2 * K + 1, 200, generator=gen) * 2.0
    logits[K + 3] += 1.2  # a weak, steady preference for +3 that single frames often miss
    single, pooled = decode_dense(logits), decode_dense(logits, timeline_frames=25)
    assert single.offset == pooled.offset == 3  # the clip decision does not depend on the timeline
    agree = [np.mean(np.asarray(r.per_frame_offset) == 3) for r in (single, pooled)]
    assert agree[0] < 0.5 and agree[1] > 0.85, agree  # measured 0.33 and 0.90 (the ends pool fewer frames)
