"""Writing small test videos with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: np.ndarray | None, audio: np.ndarray | None, fps: int = 25,
                sample_rate: int = 16000, audio_codec: str = "pcm_s16le", rotation: int = 0) -> Path:
    """``frames`` (T,H,W,3) uint8 RGB, stored as they are with a display matrix turning them ``rotation``
    degrees counter-clockwise; ``audio`` (samples,) or (channels, samples) float32."""
    with av.open(str(path), "w") as container:
        vstream = None
        if frames is not None:
            vstream = container.add_stream("mpeg4", rate=fps)
            vstream.height, vstream.width = frames.shape[1:3]
            vstream.pix_fmt = "yuv420p"
            vstream.bit_rate = 4_000_000
            if rotation:
                vstream.set_display_rotation(rotation)
        astream = None
        if audio is not None:
            audio = np.atleast_2d(audio).astype(np.float32)
            astream = container.add_stream(audio_codec, rate=sample_rate)
            astream.layout = "mono" if audio.shape[0] == 1 else "stereo"
        if vstream is not None:
            for image in frames:
                for packet in vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in vstream.encode(None):
                container.mux(packet)
        if astream is not None:
            fmt = "s16p" if audio_codec == "pcm_s16le" else "fltp"
            data = (audio * 32767).astype(np.int16) if fmt == "s16p" else audio
            step = 1024
            for start in range(0, data.shape[1], step):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, start:start + step]), format=fmt,
                                                   layout=astream.layout.name)
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
    return path
