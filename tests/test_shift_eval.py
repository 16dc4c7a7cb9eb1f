"""The real-clip shift harness: shifting a clip's audio by k moves the truth by -k, both scores."""

from __future__ import annotations

import numpy as np
import pytest

from syncopt.data.lipcache import ClipFeatures
from syncopt.core.errors import UsageError
from syncopt.analysis.shift_eval import (ShiftEvalReport, baseline_scorer, evaluate_shifts, format_report, parse_contexts,
                                shifted, valid_range)

SHIFTS = [-10, -5, 0, 5, 10]


def _clip(n: int = 200, lag: int = 0, seed: int = 0) -> ClipFeatures:
    """A clip whose mouth opening follows its speech energy, the video ``lag`` frames behind
    (offset ``lag``: video frame t matches audio frame t - lag)."""
    rng = np.random.default_rng(seed)
    energy = np.convolve(rng.standard_normal(n + 40), np.ones(4) / 4, mode="same")[20:20 + n].astype(np.float32)
    opening = np.roll(energy, lag).astype(np.float32)
    mfcc = np.repeat(energy[None], 13, 0).repeat(4, 1)
    return ClipFeatures(name=f"synthetic{seed}", sha256="0" * 64, start=0, points=np.zeros((n, 468, 3), np.float32),
                        opening=opening, mfcc=mfcc, energy=energy, num_frames=n)


def test_shift_moves_audio_by_whole_frames() -> None:
    clip = _clip()
    mfcc, energy = shifted(clip, 3)
    np.testing.assert_array_equal(energy[3:], clip.energy[:-3])
    np.testing.assert_array_equal(mfcc[:, 12:], clip.mfcc[:, :-12])
    assert valid_range(clip, 3) == (0, clip.frames - 3)  # audio delayed 3: the last 3 frames' partners are cut off
    assert valid_range(clip, -4) == (4, clip.frames)  # audio advanced 4: the first 4 frames' partners are gone


@pytest.mark.parametrize("k,base", [(10, 0), (-10, 0), (5, 3), (-5, 3), (0, -2)])
def test_valid_frames_are_those_whose_partner_audio_is_real(k: int, base: int) -> None:
    """Frame t matches the original audio t - base, which the shifted track holds at t - base + k:
    inside the range both are real, just outside one of them is not."""
    clip = _clip()
    n = clip.num_frames
    lo, hi = valid_range(clip, k, base)

    def real(t: int) -> bool:
        return 0 <= t - base < n and 0 <= t - base + k < n

    assert [t for t in range(clip.frames) if real(t)] == list(range(lo, hi))


@pytest.mark.parametrize("k", SHIFTS)
def test_baseline_follows_a_known_shift(k: int) -> None:
    clip = _clip(lag=2)
    decide = baseline_scorer(clip, k)
    lo, hi = valid_range(clip, k)
    assert decide(lo, hi) == 2 - k


def test_scores_truth_moves_by_minus_k_and_a_constant_scores_one_over_shifts() -> None:
    clips = [_clip(lag=2, seed=s) for s in range(3)]
    bases = {c.name: 2 for c in clips}
    follows = evaluate_shifts(clips, bases, {"baseline": baseline_scorer}, SHIFTS, ["25", "full"])["baseline"]
    for context in ("25", "full"):
        assert follows.by_context[context].absolute_exact == 1.0
        assert follows.by_context[context].following_exact == 1.0
    assert follows.by_context["25"].windows == sum(
        (valid_range(c, k, 2)[1] - valid_range(c, k, 2)[0]) // 25 for c in clips for k in SHIFTS)

    constant = evaluate_shifts(clips, bases, {"constant": lambda clip, k: (lambda lo, hi: 2)}, SHIFTS, ["full"])
    score = constant["constant"].by_context["full"]
    assert score.following_exact == pytest.approx(1 / len(SHIFTS))
    assert score.absolute_exact == pytest.approx(1 / len(SHIFTS))
    wrong_base = evaluate_shifts(clips, {c.name: 0 for c in clips}, {"baseline": baseline_scorer}, SHIFTS,
                                 ["full"])["baseline"].by_context["full"]
    assert wrong_base.following_exact == 1.0 and wrong_base.absolute_pm1 == 0.0  # following needs no base
    table = format_report(ShiftEvalReport(clips=[c.name for c in clips], clip_sha256={}, base_offsets=bases,
                                          shifts=SHIFTS, contexts=["25", "full"], scorers={"baseline": follows}))
    assert "baseline" in table and "1.000" in table


def test_contexts_parse_or_fail_in_one_line() -> None:
    assert parse_contexts("25,50,full") == ["25", "50", "full"]
    for bad in ("", "3", "full,x", "-5"):
        with pytest.raises(UsageError):
            parse_contexts(bad)


def test_model_scorer_sums_the_models_log_probabilities() -> None:
    """One model decides by its own mean log-probability; several (an ensemble) by their sum."""
    import torch

    from syncopt.analysis.shift_eval import model_scorer

    class Peaked:
        """Offset logits ``height`` at ``offset``, 0 elsewhere, on every frame of the window."""

        spec = type("Spec", (), {"max_offset": 15, "min_frames": 5})

        def __init__(self, offset: int, height: float) -> None:
            self.offset, self.height = offset, height

        def __call__(self, video, audio):
            logits = torch.zeros(1, 31, video.shape[-1])
            logits[:, self.offset + 15] = self.height
            return {"offset_logits": logits}

    rng = np.random.default_rng(0)
    clip = ClipFeatures(name="c", sha256="0" * 64, start=0, points=rng.normal(size=(60, 468, 3)).astype(np.float32),
                        opening=np.zeros(60, np.float32), mfcc=np.zeros((13, 240), np.float32),
                        energy=np.zeros(60, np.float32), num_frames=60)
    sure, unsure = Peaked(3, 8.0), Peaked(-2, 1.0)
    assert model_scorer(sure)(clip, 0)(20, 45) == 3
    assert model_scorer(unsure)(clip, 0)(20, 45) == -2
    assert model_scorer(sure, unsure)(clip, 0)(20, 45) == 3
    assert model_scorer(unsure, unsure, Peaked(5, 1.5))(clip, 0)(20, 45) == -2  # 2 x 1.0 beats 1.5 in log-probability
