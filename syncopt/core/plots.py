"""PNG plots for people: sync timelines, offset curves, accuracy by context length."""

from __future__ import annotations

import os

import numpy as np

from syncopt.core.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sync(video_sync, path: str | os.PathLike) -> None:
    """Per track: clip score per offset (left) and per-frame offset / in-sync probability (right)."""
    plt = _pyplot()
    tracks = video_sync.tracks
    fig, axes = plt.subplots(len(tracks), 2, figsize=(12, 3.2 * len(tracks)), squeeze=False)
    for row, track in zip(axes, tracks):
        res = track.result
        offsets = np.arange(-res.max_offset, res.max_offset + 1)
        row[0].plot(offsets, res.offset_scores, marker="o", ms=3)
        row[0].axvline(res.offset, color="tab:red", ls="--", label=f"offset {res.offset:+d}")
        row[0].set(xlabel="offset (frames, + = audio leads)",
                   ylabel="mean distance" if res.min_dist is not None else "mean log-prob",
                   title=f"track {track.track}{' (speaking)' if track.speaking else ''}: conf {res.confidence:.2f}")
        row[0].legend()
        t = (track.start_frame + np.arange(len(res.per_frame_offset))) / video_sync.fps
        row[1].plot(t, res.per_frame_offset, lw=1, label="per-frame offset")
        row[1].set(xlabel="time (s)", ylabel="offset (frames)", ylim=(-res.max_offset - 1, res.max_offset + 1))
        if res.per_frame_sync_prob is not None:
            twin = row[1].twinx()
            twin.fill_between(t, res.per_frame_sync_prob, color="tab:green", alpha=0.25, step="mid")
            twin.set(ylabel="in-sync probability", ylim=(0, 1))
        row[1].legend(loc="upper left")
    fig.suptitle(f"{os.path.basename(video_sync.video)} — {video_sync.model} ({video_sync.preset})")
    _save(fig, path)


def plot_context_accuracy(report, path: str | os.PathLike) -> None:
    """Offset accuracy (exact and within one frame) against context length."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    contexts = sorted(report.context_accuracy)
    ax.plot(contexts, [report.context_accuracy[c] for c in contexts], marker="o", label="exact")
    ax.plot(contexts, [report.context_accuracy_pm1[c] for c in contexts], marker="s", label="±1 frame")
    ax.set(xlabel="context (frames)", ylabel="offset accuracy", ylim=(0, 1.02), title="offset accuracy by context")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def _save(fig, path: str | os.PathLike) -> None:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_robustness(report, path: str | os.PathLike) -> None:
    """Accuracy against severity, one panel per corruption, one colour per model: clip offset
    accuracy (±1 frame) solid, per-frame offset accuracy dashed."""
    plt = _pyplot()
    kinds = list(report.units)
    cols = min(4, len(kinds))
    rows = -(-len(kinds) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    models = list(dict.fromkeys(c.model for c in report.cells))
    for ax, kind in zip(axes.flat, kinds):
        for model in models:
            clean = next(c for c in report.cells if c.model == model and c.severity is None)
            cells = [c for c in report.cells if c.model == model and c.corruption == kind]
            x = range(len(cells) + 1)
            line, = ax.plot(x, [clean.clip_accuracy_pm1] + [c.clip_accuracy_pm1 for c in cells],
                            marker="o", ms=3, label=f"{model} clip ±1")
            ax.plot(x, [clean.frame_accuracy] + [c.frame_accuracy for c in cells], ls="--", marker=".", ms=3,
                    color=line.get_color(), label=f"{model} per frame")
            ax.set_xticks(range(len(cells) + 1), ["clean"] + [f"{c.severity:g}" for c in cells], fontsize=7)
        ax.set(title=kind, xlabel=report.units[kind], ylabel="offset accuracy", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    spare = list(axes.flat)[len(kinds):]
    for ax in spare:
        ax.axis("off")
    (spare[0] if spare else axes.flat[0]).legend(*axes.flat[0].get_legend_handles_labels(), fontsize=7,
                                                 loc="center" if spare else "best")
    fig.suptitle(f"robustness on {report.clips} synthetic clips of {report.frames} frames")
    _save(fig, path)


def plot_locate(report, path: str | os.PathLike) -> None:
    """Error along depth (``syncopt parity --locate``): relative error and 1 - cosine per compared node,
    in the reference's topological order, the node tolerance dashed and the first breach marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    x = [n.index for n in report.nodes]
    ax.semilogy(x, [max(n.relative, 1e-9) for n in report.nodes], marker="o", ms=3, label="max |a-b| / max |b|")
    ax.semilogy(x, [max(1 - n.cosine, 1e-9) for n in report.nodes], marker="s", ms=3, label="1 - cosine")
    tol = report.tolerance
    if tol.max_relative is not None:
        ax.axhline(tol.max_relative, color="tab:blue", ls="--", lw=1)
    if tol.min_cosine is not None:
        ax.axhline(1 - tol.min_cosine, color="tab:orange", ls="--", lw=1)
    if report.first_breach is not None:
        ax.axvline(report.first_breach.index, color="tab:red", lw=1, label=f"first breach: {report.first_breach.node}")
    ax.set(xlabel="node (topological order of the fp32 ONNX graph)", ylabel="error",
           title=f"{os.path.basename(report.artifact)} ({report.runtime}, {report.precision})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_sensitivity(report, path: str | os.PathLike, top: int = 30) -> None:
    """Per-node INT8 sensitivity (``syncopt quantize --sensitivity``): normalised MSE, worst first."""
    plt = _pyplot()
    nodes = report.nodes[:top]
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(nodes) + 1.5))
    ax.barh(range(len(nodes)), [max(n.nmse, 1e-12) for n in nodes], log=True)
    ax.set_yticks(range(len(nodes)), [n.node for n in nodes], fontsize=6)
    ax.invert_yaxis()
    ax.set(xlabel="normalised MSE of the node alone in INT8", title=f"INT8 sensitivity on {report.clips} calibration clips")
    _save(fig, path)
