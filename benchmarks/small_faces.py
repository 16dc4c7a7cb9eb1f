"""Small-face copies of real clips (issue 19): each clip's frames shrunk by a scale into a grey canvas of the
clip's own size — a smaller, farther face, as in wide stage shots — with its audio unchanged. Used as a
development proxy for small faces (``--scale 0.4`` of ``dev_plus.csv``) and, in the ninth round, as extra
training copies (``--scale 0.3:0.6 --every 2``: a scale drawn per clip; docs/real_video.md, "Ninth round").

Usage: python benchmarks/small_faces.py --data LIST.csv --scale 0.4 --out DIR [--every N] [--seed 0]
Writes DIR/<clip>_x<scale>.mkv (MPEG-4 video, 16-bit PCM audio, 25 fps) and DIR.csv (path,offset: each
copy keeps its clip's offset). Copies already in DIR are kept (rerun to resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from syncopt.data.datasets import read_manifest
from syncopt.data.media import load_media

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mediautil import write_video  # noqa: E402

GREY = 96


def shrink(frames: np.ndarray, scale: float) -> np.ndarray:
    """``frames`` (T, H, W, 3) shrunk by ``scale`` (area averaging) into the middle of a grey canvas of
    their size (rounded down to even sides, as the encoder wants)."""
    t, height, width, _ = frames.shape
    h, w = int(round(height * scale)) // 2 * 2, int(round(width * scale)) // 2 * 2
    canvas = np.full((t, height // 2 * 2, width // 2 * 2, 3), GREY, np.uint8)
    y, x = (canvas.shape[1] - h) // 2, (canvas.shape[2] - w) // 2
    for i, frame in enumerate(frames):
        canvas[i, y:y + h, x:x + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="clips: a folder or a path,offset manifest")
    parser.add_argument("--scale", default="0.4", help="a scale, or LOW:HIGH to draw one per clip")
    parser.add_argument("--out", required=True, help="folder of the copies (the list is written beside it)")
    parser.add_argument("--every", type=int, default=1, help="copy every Nth distinct clip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    low, _, high = args.scale.partition(":")
    rng = np.random.default_rng(args.seed)
    clips = list(dict.fromkeys(read_manifest(args.data)))[::args.every]  # a manifest may list a clip more than once
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["path,offset"]
    for i, (path, offset) in enumerate(clips):
        scale = float(rng.uniform(float(low), float(high))) if high else float(low)
        target = out / f"{path.parent.name}_{path.stem}_x{scale:.2f}.mkv"
        if not target.exists():
            media = load_media(path)
            write_video(target, shrink(media.frames, scale), media.audio)
        lines.append(f"{target.resolve()},{offset}")
        print(f"[{i + 1}/{len(clips)}] {target.name}", flush=True)
    Path(f"{out}.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
