"""Annotated video of a ``syncopt sync`` result: track boxes, who speaks, each track's offset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from syncopt.core.atomic import atomic_path
from syncopt.core.errors import UsageError

SPEAKING, SILENT = (40, 220, 60), (200, 200, 200)  # RGB


def render_sync(video_sync, out: str | os.PathLike) -> Path:
    """Write ``out`` (.mp4, .mkv, .avi, .mov): the video at the model's frame rate with each face
    track's box (green while it speaks, per :attr:`VideoSync.speakers`), its offset and speaking
    state, and the original audio. Written atomically."""
    import av
    import cv2

    from syncopt.data.media import FrameSource, decode_audio, fit_audio

    target = Path(out)
    if target.suffix.lower() not in (".mp4", ".mkv", ".avi", ".mov"):
        raise UsageError(f"--render wants a .mp4, .mkv, .avi or .mov file, not '{target.name}'")
    source = FrameSource(video_sync.video, fps=video_sync.fps)
    rate = 16000
    audio = fit_audio(decode_audio(video_sync.video, rate).samples, video_sync.frames, video_sync.fps, rate)
    per_frame = video_sync.speakers.per_frame if video_sync.speakers else []
    with atomic_path(target) as tmp:
        with av.open(str(tmp), "w", format=_FORMATS[target.suffix.lower()]) as container:
            vstream = container.add_stream("mpeg4", rate=round(video_sync.fps))
            vstream.pix_fmt, vstream.bit_rate = "yuv420p", 4_000_000
            pcm = target.suffix.lower() == ".avi"
            astream = container.add_stream("pcm_s16le" if pcm else "aac", rate=rate)
            astream.layout = "mono"
            for t, frame in enumerate(source):
                if t == 0:
                    vstream.height, vstream.width = (frame.shape[0] // 2) * 2, (frame.shape[1] // 2) * 2
                image = np.ascontiguousarray(frame[:vstream.height, :vstream.width])
                for track in video_sync.tracks:
                    _draw(cv2, image, track, t, per_frame[t] == track.track if t < len(per_frame) else False)
                for packet in vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            container.mux(vstream.encode(None))
            step = 1024
            for start in range(0, len(audio), step):
                block = audio[None, start:start + step]
                piece = av.AudioFrame.from_ndarray((block * 32767).astype(np.int16) if pcm else block.astype(np.float32),
                                                   format="s16" if pcm else "fltp", layout="mono")
                piece.sample_rate, piece.pts = rate, start
                container.mux(astream.encode(piece))
            container.mux(astream.encode(None))
    return target


_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov"}


def _draw(cv2, image: np.ndarray, track, t: int, speaking: bool) -> None:
    i = t - track.start_frame
    if not 0 <= i < track.num_frames:
        return
    h, w = image.shape[:2]
    box = track.frame_boxes[i] if track.frame_boxes else [0, 0, w - 1, h - 1]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    colour = SPEAKING if speaking else SILENT
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
    label = f"#{track.track} {track.offset_frames:+d}f ({track.offset_ms:+.0f} ms){' SPEAKING' if speaking else ''}"
    cv2.putText(image, label, (max(x1, 2), max(y1 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
