"""Real media: decoding, resampling, reconciliation, MFCC against python_speech_features, and
the published offset of example.avi measured without a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import python_speech_features as psf

from mediautil import write_video
from syncopt.data.media import load_media, mfcc, mfcc_for_frames
from syncopt.data.signals import audio_envelope, best_lag
from syncopt.core.errors import InputFileError, MediaError, NoAudioError

EXAMPLE = Path(__file__).parent / "fixtures" / "example.avi"
MFCC_ATOL = 1e-3  # float32 output vs python_speech_features' float64


@pytest.fixture(scope="module")
def example():
    return load_media(EXAMPLE)


def test_example_decodes_to_published_facts(example):
    # facts of the file (fixtures/README.md): 317 frames 224x224 at 25 fps, 202,880 samples at 16 kHz
    assert example.frames.shape == (317, 224, 224, 3) and example.frames.dtype == np.uint8
    assert example.fps == 25 and example.sample_rate == 16000 and example.audio.shape == (202_880,)
    assert example.duration == pytest.approx(12.68)
    assert example.notes == ()
    assert mfcc_for_frames(example.audio, example.num_frames).shape == (13, 1268)


@pytest.mark.parametrize("kind", ["noise", "tone", "example"])
def test_mfcc_matches_python_speech_features(kind, example):
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    audio = {"noise": 0.1 * rng.standard_normal(16000), "tone": 0.5 * np.sin(2 * np.pi * 300 * t),
             "example": example.audio}[kind].astype(np.float32)
    ours = mfcc(audio)
    # the original pipeline passes int16-valued samples (scipy.io.wavfile) to psf.mfcc
    reference = psf.mfcc(audio.astype(np.float64) * 32768.0, 16000).T
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= MFCC_ATOL


def _mouth_darkness(frames: np.ndarray) -> np.ndarray:
    """Share of dark pixels in example.avi's mouth region (rows 100-145, cols 80-145)."""
    gray = frames[:, 100:145, 80:145].astype(np.float32).mean(-1)
    return (gray < 60).mean((1, 2))


def test_example_envelope_mouth_lag_is_the_published_offset(example):
    # the original SyncNet reports AV offset 3 on this clip; a model-free measure agrees, which
    # also pins our sign convention (video t matches audio t - 3: the audio leads)
    lag = best_lag(audio_envelope(example.audio, example.num_frames), _mouth_darkness(example.frames))
    assert lag == 3


@pytest.mark.parametrize("k", [2, 5])
def test_delayed_audio_copy_shifts_the_measured_lag(example, tmp_path, k):
    delayed = np.concatenate([np.zeros(640 * k, np.float32), example.audio[:-640 * k]])
    path = write_video(tmp_path / "delayed.avi", example.frames, delayed)
    media = load_media(path)
    assert media.num_frames == 317
    lag = best_lag(audio_envelope(media.audio, media.num_frames), _mouth_darkness(media.frames))
    assert lag == 3 - k  # delaying the audio by k frames lowers the offset by k


def test_30fps_video_is_resampled_to_25fps(tmp_path):
    levels = (np.arange(60) * 4).astype(np.uint8)  # frame i has grey level 4 i
    frames = np.repeat(levels[:, None, None, None], 32, 1).repeat(32, 2).repeat(3, 3)
    audio = 0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000)
    media = load_media(write_video(tmp_path / "v30.mp4", frames, audio, fps=30))
    assert media.num_frames == 50  # 2 s at 25 fps
    assert "video resampled from 30.00 to 25 fps" in media.notes
    # target frame k shows source frame floor(1.2 k) (the latest at or before k / 25 s)
    got = media.frames[:, 8:24, 8:24].mean((1, 2, 3))
    assert np.abs(got - 4 * np.floor(1.2 * np.arange(50))).max() < 3


def test_frame_source_streams_the_same_timeline_on_every_pass(tmp_path):
    from syncopt.data.media import FrameSource

    levels = (np.arange(60) * 4).astype(np.uint8)
    frames = np.repeat(levels[:, None, None, None], 32, 1).repeat(32, 2).repeat(3, 3)
    path = write_video(tmp_path / "v30.mp4", frames, 0.3 * np.sin(np.arange(32000) / 5.0), fps=30)
    source = FrameSource(path)
    assert source.num_frames is None  # known only after a pass
    first = list(source)
    assert source.num_frames == 50 and "video resampled from 30.00 to 25 fps" in source.notes
    np.testing.assert_array_equal(np.stack(list(source)), np.stack(first))  # a second pass decodes again
    np.testing.assert_array_equal(load_media(path).frames, np.stack(first))
    assert len(list(FrameSource(path, max_frames=7))) == 7


def test_native_frame_source_yields_every_frame_with_its_time(tmp_path):
    from syncopt.data.media import FrameSource

    levels = (np.arange(60) * 4).astype(np.uint8)
    frames = np.repeat(levels[:, None, None, None], 32, 1).repeat(32, 2).repeat(3, 3)
    path = write_video(tmp_path / "v30.mp4", frames, 0.3 * np.sin(np.arange(32000) / 5.0), fps=30)
    source = FrameSource(path, native=True)
    got = np.stack(list(source))[:, 8:24, 8:24].mean((1, 2, 3))
    assert len(got) == 60 and np.abs(got - levels).max() < 3  # every source frame once, in order
    np.testing.assert_allclose(source.times, np.arange(60) / 30, atol=1e-6)
    assert source.num_frames == 50  # the 25 fps timeline's length, as the resampling source counts it
    capped = FrameSource(path, max_frames=10, native=True)
    assert len(list(capped)) == 12  # the frames before 10 / 25 s
    assert not any(n.startswith("truncated") for n in capped.notes)


def test_prefetching_decoder_gives_the_same_frames_and_stops_when_closed(tmp_path):
    import threading

    from syncopt.data.media import FrameSource

    levels = (np.arange(40) * 6).astype(np.uint8)
    frames = np.repeat(levels[:, None, None, None], 32, 1).repeat(32, 2).repeat(3, 3)
    path = write_video(tmp_path / "v.mp4", frames, 0.3 * np.sin(np.arange(32000) / 5.0))
    direct = FrameSource(path, prefetch=0)
    ahead = FrameSource(path, prefetch=2)
    np.testing.assert_array_equal(np.stack(list(ahead)), np.stack(list(direct)))
    assert ahead.num_frames == direct.num_frames == 40 and ahead.notes == direct.notes
    stream = iter(FrameSource(path, prefetch=2))
    next(stream)
    assert any(t.name == "syncopt-decode" for t in threading.enumerate())
    stream.close()  # the consumer stops early: the decoding thread ends and closes the file
    assert not any(t.name == "syncopt-decode" for t in threading.enumerate())
    with pytest.raises(MediaError, match="no decodable video frames"):  # raised in the thread, seen here
        list(FrameSource(path, max_frames=0))


@pytest.mark.parametrize("rate,channels,codec", [(44100, 2, "aac"), (48000, 2, "pcm_s16le"), (8000, 1, "pcm_s16le")])
def test_audio_is_resampled_to_16k_mono(tmp_path, rate, channels, codec):
    t = np.arange(2 * rate) / rate
    tone = 0.4 * np.sin(2 * np.pi * 440 * t)
    audio = np.stack([tone] * channels) if channels > 1 else tone
    frames = np.zeros((50, 32, 32, 3), np.uint8)
    media = load_media(write_video(tmp_path / f"a{rate}.mkv", frames, audio, sample_rate=rate, audio_codec=codec))
    assert media.sample_rate == 16000 and media.audio.shape == (32000,)
    assert media.source_sample_rate == rate and media.source_channels == channels
    window = media.audio[4000:20000]
    peak = np.fft.rfftfreq(len(window), 1 / 16000)[np.argmax(np.abs(np.fft.rfft(window)))]
    assert abs(peak - 440) <= 5


def test_missing_and_non_media_files(tmp_path):
    with pytest.raises(InputFileError, match="video not found: .*nothing.mp4"):
        load_media(tmp_path / "nothing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="junk.mp4") as err:
        load_media(junk)
    assert "\n" not in str(err.value)


def test_video_without_audio_and_silent_audio(tmp_path):
    frames = np.zeros((30, 32, 32, 3), np.uint8)
    with pytest.raises(NoAudioError, match="mute.avi has no audio stream"):
        load_media(write_video(tmp_path / "mute.avi", frames, None))
    with pytest.raises(NoAudioError, match="silent.avi: the audio track is silent or constant"):
        load_media(write_video(tmp_path / "silent.avi", frames, np.zeros(19200)))
    assert load_media(tmp_path / "mute.avi", require_audio=False).num_frames == 30


def test_truncated_file_gives_its_prefix_or_a_media_error(tmp_path):
    data = EXAMPLE.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    try:
        media = load_media(cut)
    except MediaError as exc:  # also acceptable: nothing decodable
        assert "cut.avi" in str(exc) and "\n" not in str(exc)
    else:
        assert 0 < media.num_frames < 317  # a decodable prefix, shorter than the whole
        assert media.audio.shape == (media.num_frames * 640,)


# -- lazy frames: RGB only where asked -------------------------------------------------------------

def _random_boxes(rng: np.random.Generator, width: int, height: int, count: int) -> list[tuple[int, int, int, int]]:
    """Boxes of any offset and size (odd ones included) inside a ``width`` x ``height`` frame."""
    boxes = []
    for _ in range(count):
        x0, x1 = sorted(rng.choice(width + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(height + 1, 2, replace=False))
        boxes.append((int(x0), int(y0), int(x1), int(y1)))
    return boxes + [(0, 0, width, height), (width - 1, height - 1, width, height)]


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_lazy_frame_regions_are_exactly_the_whole_conversion(tmp_path, rotation):
    import av

    from syncopt.data.media import FrameSource, LazyFrame, upright

    # example.avi (4:2:0, range and matrix unspecified) stored at 224x160 with a display matrix
    stored = load_media(EXAMPLE, max_frames=6).frames[:, 32:192]
    clip = write_video(tmp_path / f"turned{rotation}.mp4", stored, None, rotation=rotation)
    rng = np.random.default_rng(rotation)
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            assert frame.rotation % 360 == rotation and frame.format.name == "yuv420p"
            whole, lazy = upright(frame), LazyFrame(frame)
            assert lazy.shape == whole.shape
            np.testing.assert_array_equal(lazy.rgb(), whole)
            for x0, y0, x1, y1 in _random_boxes(rng, whole.shape[1], whole.shape[0], 40):
                np.testing.assert_array_equal(lazy.region(x0, y0, x1, y1), whole[y0:y1, x0:x1])  # tolerance 0
    eager, lazy_frames = list(FrameSource(clip)), list(FrameSource(clip, lazy=True))
    assert all(isinstance(f, LazyFrame) for f in lazy_frames)
    np.testing.assert_array_equal(np.stack([f.rgb() for f in lazy_frames]), np.stack(eager))
    with pytest.raises(ValueError, match="not inside"):
        lazy_frames[0].region(0, 0, eager[0].shape[1] + 1, 10)


def _smooth_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """RGB noise blurred a little: colours vary as in video, though not all from pixel to pixel."""
    import cv2

    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 1.0)


# AVColorSpace 1: BT.709; AVColorRange 1: limited (MPEG), 2: full (JPEG)
@pytest.mark.parametrize("fmt,colorspace,color_range", [("yuv420p", 1, 1), ("yuvj420p", None, 2),
                                                        ("yuv444p", None, None), ("rgb24", None, None)])
def test_lazy_frames_keep_matrix_and_range_and_convert_other_formats_whole(fmt, colorspace, color_range):
    import av

    from syncopt.data.media import LazyFrame, upright

    rng = np.random.default_rng(1)
    frame = av.VideoFrame.from_ndarray(_smooth_noise(rng, 48, 64), format="rgb24").reformat(format=fmt)
    if colorspace is not None:  # as a 1080p HEVC phone video says (BT.709, limited range)
        frame.colorspace = colorspace
    if color_range is not None:
        frame.color_range = color_range
    whole, lazy = upright(frame), LazyFrame(frame)
    for x0, y0, x1, y1 in _random_boxes(rng, 64, 48, 40):
        np.testing.assert_array_equal(lazy.region(x0, y0, x1, y1), whole[y0:y1, x0:x1])
