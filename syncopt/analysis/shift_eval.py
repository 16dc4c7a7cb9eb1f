"""Accuracy on real clips with known audio shifts, by context length (``syncopt evaluate --data``).

Every clip's audio is delayed in memory by each ``k`` of ``shifts`` frames (``k < 0`` advances it);
its offset is then decided over the whole clip and over consecutive windows of each context length,
as in the accuracy-versus-context curves of SyncNet (Chung & Zisserman 2016) and Synchformer
(Iashin et al. 2024). Delaying the audio by ``k`` frames lowers the offset by ``k`` (positive offsets
mean the audio leads). Two scores, each exact and within +-1 frame:

- *absolute*: truth is ``base - k``, with the clip's given base offset (0 unless a CSV says otherwise);
- *shift-following*: truth is ``base_est - k``, where ``base_est`` is the median of ``offset + k`` over
  the clip's windows and shifts at that context; it needs no base, so a source's own small offset
  does not count against a model, while a constant answer scores ``1 / len(shifts)``.

Scorers are a registry: the model-free lip-geometry baseline, and any dense sync model.
Shifts are applied to the cached features (MFCC columns and per-frame energy move by whole
frames: one frame is exactly 4 MFCC hops of 10 ms), which equals shifting the waveform away from
the clip's ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from syncopt.core.errors import UsageError
from syncopt.data.datasets import read_manifest
from syncopt.data.lipcache import ClipFeatures, build_cache
from syncopt.data.lipfeatures import lip_inputs

if TYPE_CHECKING:
    from syncopt.core.artifact import Artifact
    from syncopt.core.spec import ModelSpec
    from syncopt.models.sources import Source


MAX_OFFSET = 15
Decider = Callable[[int, int], int]  # (first, stop) frame of a window, track-relative -> decided offset
Scorer = Callable[[ClipFeatures, int], Decider]  # (clip, shift k) -> window decider


class Score(BaseModel):
    windows: int
    absolute_pm1: float
    absolute_exact: float
    following_pm1: float
    following_exact: float


class ScorerReport(BaseModel):
    by_context: dict[str, Score]
    by_shift: dict[str, dict[int, Score]] = Field(description="context -> shift -> score")
    by_clip: dict[str, dict[str, Score]] = Field(description="context -> clip -> score")


class ShiftEvalReport(BaseModel):
    clips: list[str]
    clip_sha256: dict[str, str]
    base_offsets: dict[str, int]
    shifts: list[int]
    contexts: list[str]
    scorers: dict[str, ScorerReport]
    failed: list[str] = Field(default_factory=list, description="clips skipped, with why")


def shifted(clip: ClipFeatures, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The clip's MFCC and energy with the audio delayed by ``k`` frames (edge values fill the gap)."""
    cols = np.clip(np.arange(clip.mfcc.shape[1]) - 4 * k, 0, clip.mfcc.shape[1] - 1)
    frames = np.clip(np.arange(clip.num_frames) - k, 0, clip.num_frames - 1)
    return clip.mfcc[:, cols], clip.energy[frames]


def valid_range(clip: ClipFeatures, k: int, base: int = 0) -> tuple[int, int]:
    """Track-relative frames whose partner audio is real at shift ``k``: video frame ``t`` of a clip
    with offset ``base`` matches original audio ``t - base``, which the shifted track holds at
    ``t - base + k``; both must lie inside the clip (elsewhere the partner is cut off or fill, and
    no scorer could find the offset from that frame)."""
    lo = max(0, base + max(0, -k) - clip.start)
    hi = min(clip.frames, base + min(clip.num_frames, clip.num_frames - k) - clip.start)
    return lo, max(lo, hi)


def _pearson_lags(video: np.ndarray, audio: np.ndarray, lo: int, hi: int, offset_at: int) -> int:
    """Offset maximising the Pearson correlation of ``video[lo:hi]`` with ``audio[t - o]``."""
    best, best_r = 0, -np.inf
    for o in range(-MAX_OFFSET, MAX_OFFSET + 1):
        a_lo, a_hi = lo - o + offset_at, hi - o + offset_at
        v_lo, v_hi = lo, hi
        if a_lo < 0:
            v_lo, a_lo = v_lo - a_lo, 0
        if a_hi > len(audio):
            v_hi, a_hi = v_hi - (a_hi - len(audio)), len(audio)
        if v_hi - v_lo < 5:
            continue
        r = np.corrcoef(video[v_lo:v_hi], audio[a_lo:a_hi])[0, 1]
        if np.isfinite(r) and r > best_r:
            best, best_r = o, r
    return best


def baseline_scorer(clip: ClipFeatures, k: int) -> Decider:
    """Model-free: mouth-opening speed against band log-energy speed, Pearson over lags +-15."""
    _, energy = shifted(clip, k)
    video = np.gradient(np.convolve(clip.opening, np.ones(3) / 3, mode="same"))
    audio = np.gradient(np.convolve(energy, np.ones(3) / 3, mode="same"))
    return lambda lo, hi: _pearson_lags(video, audio, lo, hi, clip.start)


def session_scorer(*runs: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], max_offset: int,
                   min_frames: int) -> Scorer:
    """Runners of a whole dense model (an exported artifact's runtime session, or :func:`torch_run`),
    one pass per window; several runners (an ensemble) add their log-probabilities.

    A window of frames ``[lo, hi)`` is run with the video and audio of ``[lo - K, hi + K)`` (within the
    track) and decided by the argmax of the mean per-frame offset log-probability over its own frames.
    Each frame's output is what ``syncopt sync`` computes for it on the whole clip: its video features
    see the tower's receptive field around it, as SyncNet's evaluation computes each frame's feature from
    the 5 frames around it before averaging a context window (Chung & Zisserman 2016), and its audio the
    +-K frames the offset search needs.
    """
    def score(clip: ClipFeatures, k: int) -> Decider:
        mfcc, _ = shifted(clip, k)
        video, audio = (t.numpy()[None] for t in lip_inputs(clip.lips, mfcc[:, 4 * clip.start:4 * (clip.start + clip.frames)]))
        n = video.shape[-1]

        def decide(lo: int, hi: int) -> int:
            a, b = max(0, lo - max_offset), min(n, hi + max_offset)
            if b - a < min_frames:  # a short track: widen to the model's receptive field where it can
                a, b = max(0, min(a, b - min_frames)), min(n, max(b, a + min_frames))
            if b - a < min_frames:
                return 0
            total = 0.0
            for run in runs:
                logits = np.asarray(run({"video": video[..., a:b], "audio": audio[..., 4 * a:4 * b]})["offset_logits"])
                window = logits[0, :, lo - a:hi - a].astype(np.float64)
                peak = window.max(0)
                total = total + (window - peak - np.log(np.exp(window - peak).sum(0))).mean(1)
            return int(np.argmax(total)) - max_offset

        return decide

    return score


def torch_run(model) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A torch model as a runtime session's ``run``: numpy feeds in, numpy outputs out."""
    import torch

    @torch.no_grad()
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.float().numpy() for k, v in model(**{n: torch.from_numpy(x) for n, x in feeds.items()}).items()}

    return run


def model_scorer(*models) -> Scorer:
    """Dense torch models (``fcn_lips``) scored as :func:`session_scorer` scores an exported one."""
    spec = models[0].spec
    return session_scorer(*(torch_run(m) for m in models), max_offset=spec.max_offset, min_frames=spec.min_frames)


def _windows(lo: int, hi: int, context: str) -> list[tuple[int, int]]:
    if context == "full":
        return [(lo, hi)] if hi - lo >= 5 else []
    length = int(context)
    return [(s, s + length) for s in range(lo, hi - length + 1, length)]


def _score(rows: list[tuple[int, int, int]]) -> Score:
    """``rows`` of (decided, absolute truth, following truth)."""
    if not rows:
        return Score(windows=0, absolute_pm1=float("nan"), absolute_exact=float("nan"),
                     following_pm1=float("nan"), following_exact=float("nan"))
    r = np.array(rows)
    return Score(windows=len(r), absolute_pm1=float(np.mean(np.abs(r[:, 0] - r[:, 1]) <= 1)),
                 absolute_exact=float(np.mean(r[:, 0] == r[:, 1])),
                 following_pm1=float(np.mean(np.abs(r[:, 0] - r[:, 2]) <= 1)),
                 following_exact=float(np.mean(r[:, 0] == r[:, 2])))


def evaluate_shifts(clips: Sequence[ClipFeatures], bases: dict[str, int], scorers: dict[str, Scorer],
                    shifts: Sequence[int], contexts: Sequence[str],
                    progress: Callable[[str], None] | None = None) -> dict[str, ScorerReport]:
    """Score every scorer on every clip, shift and context window."""
    reports = {}
    for name, scorer in scorers.items():
        # (context, clip, shift) -> decided offsets of the windows
        decided: dict[tuple[str, str, int], list[int]] = {}
        for clip in clips:
            if progress is not None:
                progress(f"{name}: {clip.name}")
            for k in shifts:
                decide = scorer(clip, k)
                lo, hi = valid_range(clip, k, bases[clip.name])
                for context in contexts:
                    decided[(context, clip.name, k)] = [decide(a, b) for a, b in _windows(lo, hi, context)]
        rows: dict[tuple[str, str, int], list[tuple[int, int, int]]] = {}
        for context in contexts:
            for clip in clips:
                per_shift = {k: decided[(context, clip.name, k)] for k in shifts}
                plus_k = [o + k for k, offsets in per_shift.items() for o in offsets]
                base_est = int(np.round(np.median(plus_k))) if plus_k else 0
                for k, offsets in per_shift.items():
                    rows[(context, clip.name, k)] = [(o, bases[clip.name] - k, base_est - k) for o in offsets]
        reports[name] = ScorerReport(
            by_context={c: _score([r for (cc, _, _), v in rows.items() if cc == c for r in v]) for c in contexts},
            by_shift={c: {k: _score([r for (cc, _, kk), v in rows.items() if cc == c and kk == k for r in v])
                          for k in shifts} for c in contexts},
            by_clip={c: {clip.name: _score([r for (cc, n, _), v in rows.items() if cc == c and n == clip.name
                                            for r in v]) for clip in clips} for c in contexts},
        )
    return reports


def evaluate_data(data: str | os.PathLike, scorers: dict[str, Scorer], shifts: Sequence[int],
                  contexts: Sequence[str], cache_dir: str | os.PathLike | None = None,
                  progress: Callable[[str], None] | None = None) -> ShiftEvalReport:
    """:func:`evaluate_shifts` on the clips of a folder or CSV (features cached in ``cache_dir``)."""
    listed = read_manifest(data)

    def step(i: int, n: int, name: str) -> None:
        if progress is not None:
            progress(f"features {i}/{n}: {name}")

    clips, failed = build_cache([p for p, _ in listed], cache_dir, step)
    if not clips:
        raise UsageError(f"--data {data}: no clip could be read ({'; '.join(failed)})")
    bases = {p.name: base for p, base in listed}
    return ShiftEvalReport(
        clips=[c.name for c in clips], clip_sha256={c.name: c.sha256 for c in clips},
        base_offsets={c.name: bases[c.name] for c in clips}, shifts=list(shifts), contexts=list(contexts),
        scorers=evaluate_shifts(clips, bases, scorers, shifts, contexts, progress), failed=failed,
    )


def plot_shift_eval(report: ShiftEvalReport, path: str | os.PathLike) -> None:
    """Accuracy (within +-1) against context length per scorer: shift-following solid, absolute dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from syncopt.core.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(report.contexts))
    for name, rep in report.scorers.items():
        line, = ax.plot(x, [rep.by_context[c].following_pm1 for c in report.contexts], marker="o",
                        label=f"{name}: shift-following")
        ax.plot(x, [rep.by_context[c].absolute_pm1 for c in report.contexts], marker="s", linestyle="--",
                color=line.get_color(), label=f"{name}: absolute")
    ax.set_xticks(x, [c if c == "full" else f"{c} fr" for c in report.contexts])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("context")
    ax.set_ylabel("accuracy within ±1 frame")
    ax.set_title(f"{len(report.clips)} clips, shifts {min(report.shifts)}..{max(report.shifts)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def parse_contexts(text: str) -> list[str]:
    """``"25,50,full"`` -> window lengths (at least 5 frames) and/or ``full``."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items or any(t != "full" and not (t.isdigit() and int(t) >= 5) for t in items):
        raise UsageError(f"--context {text!r}: expected window lengths of at least 5 frames and/or 'full'")
    return items


def format_report(report: ShiftEvalReport) -> str:
    """The report as a table: one row per scorer and context."""
    lines = [f"{len(report.clips)} clips, audio shifts {report.shifts} frames"]
    lines += [f"skipped {line}" for line in report.failed]
    width = max(24, *(len(name) for name in report.scorers))
    lines.append(f"{'scorer':<{width}} {'context':>8} {'windows':>8}  {'following ±1':>12} {'exact':>6}  "
                 f"{'absolute ±1':>11} {'exact':>6}")
    for name, rep in report.scorers.items():
        for context, s in rep.by_context.items():
            lines.append(f"{name:<{width}} {context:>8} {s.windows:>8}  {s.following_pm1:>12.3f} {s.following_exact:>6.3f}  "
                         f"{s.absolute_pm1:>11.3f} {s.absolute_exact:>6.3f}")
    return "\n".join(lines)


def evaluate_command(model: str | None, preset: str | None, weights: str | None, data: str,
                     shifts: Sequence[int], context: str, cache: str | None,
                     plot: str | None) -> tuple[ShiftEvalReport, str]:
    """``syncopt evaluate --data``: the baseline and a landmark model on real clips; report and its table."""
    from syncopt.core.log import status
    from syncopt.models.sources import resolve

    source = resolve(model, preset, weights, shipped=True)
    name, scorer, spec = artifact_scorer(source.artifact) if source.artifact is not None else torch_scorer(source)
    if spec.preprocessing.video_features != "lips":
        raise UsageError(f"evaluate --data scores landmark models (e.g. fcn_lips); {spec.name} reads face "
                         "crops, which the feature cache does not hold")
    scorers = {"lip-geometry baseline": baseline_scorer, name: scorer}
    report = evaluate_data(data, scorers, list(shifts), parse_contexts(context), cache, progress=status)
    if plot:
        plot_shift_eval(report, plot)
    return report, format_report(report)


def torch_scorer(source: Source) -> tuple[str, Scorer, ModelSpec]:
    """A registered model or run directory (:func:`syncopt.models.sources.resolve`), scored by :func:`model_scorer`."""
    net = source.build()
    return f"{net.spec.name} ({net.spec.preset})", model_scorer(net), net.spec


def artifact_scorer(artifact: Artifact, threads: int | None = None) -> tuple[str, Scorer, ModelSpec]:
    """An exported artifact in its format's runtime (ONNX Runtime, OpenVINO, ...), scored by :func:`session_scorer`."""
    from syncopt.runtimes import load

    if "offset_logits" not in artifact.spec.output_names:
        raise UsageError(f"{artifact.file} has no offset_logits output to decide offsets from")
    if artifact.frames is not None:
        raise UsageError(f"{artifact.file} is fixed at {artifact.frames} frames; evaluate --data runs windows of "
                         "every length: export it with a dynamic time axis")
    session = load(artifact, threads=threads)
    name = f"{artifact.file} ({session.name} {artifact.precision})"
    return name, session_scorer(session.run, max_offset=artifact.spec.max_offset, min_frames=artifact.spec.min_frames), artifact.spec
