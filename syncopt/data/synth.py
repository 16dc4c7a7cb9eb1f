"""Procedural talking heads with speech-like audio and known offsets: the default dataset.

A latent speech *source* is generated for frames ``[-M, T + M)``: syllables (a voiced pulse
train at a drifting pitch, shaped by vowel formant resonators, with attack/decay envelopes),
fricative bursts, pauses. The face in video frame ``t`` opens its mouth with the source's
loudness at frame ``t`` and shapes it by the vowel (tall /a/, wide /i/ /e/, round /o/ /u/).
The audio at audio frame ``u`` carries source frame ``u + o(u)``, so video frame ``t``
matches audio frame ``t - o``: offset ``o`` > 0 means the audio leads (SyncNet's sign).

Distractors that do not follow the audio: head motion and scale, blinks, lighting drift,
background texture, skin tone, face placement, optional mouth occluders, and audio noise at a
chosen SNR. Everything is numpy, vectorised over frames and pixels; clips are deterministic
by seed, and the splits use disjoint seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

FPS = 25
SAMPLE_RATE = 16000
HOP = SAMPLE_RATE // FPS  # 640 audio samples per video frame
MARGIN = 20  # source frames generated beyond each end of the clip (>= max offset)
KINDS = ("constant", "drift", "cutin", "two_face")
_SPLITS = {"train": 1, "val": 2, "test": 3}

# Vowel formants F1..F3 in Hz (adult averages, Peterson & Barney 1952, rounded) and the mouth
# shape they imply: (height factor, width factor).
VOWELS = {
    "a": ((730, 1090, 2440), (1.0, 1.0)),
    "e": ((530, 1840, 2480), (0.6, 1.2)),
    "i": ((270, 2290, 3010), (0.35, 1.35)),
    "o": ((570, 840, 2410), (0.8, 0.7)),
    "u": ((300, 870, 2240), (0.5, 0.6)),
}
_VOWEL_NAMES = tuple(VOWELS)


@dataclass(frozen=True)
class SynthConfig:
    crop_size: int = 48
    num_frames: int = 50  # 2 s
    max_offset: int = 15
    snr_db: float = 20.0  # background noise; lower is harder
    motion: float = 1.0  # head motion / placement jitter amplitude (0 = static)
    occlusion: float = 0.0  # probability that a clip has an occluder over part of the mouth
    distractors: bool = True  # blinks, lighting changes, background texture and colour
    mouth: str = "ellipse"  # "contour": the 3-D lip model's mouth (lips, teeth, tongue, shading; data/mouthrender.py)
    corrupt: bool = False  # light, blur, noise and an H.264 re-encode (data/mouthrender.corrupt_video)


@dataclass(frozen=True)
class SynthClip:
    frames: np.ndarray  # (T, S, S, 3) uint8 RGB
    audio: np.ndarray  # (T * 640,) float32
    offset: int  # clip label (majority offset for drift / cut-in clips)
    per_frame_offset: np.ndarray  # (T,) int64: video frame t matches audio frame t - o
    per_frame_valid: np.ndarray  # (T,) bool: False where the label is ambiguous
    mouth_opening: np.ndarray  # (T,) float32 in 0..1, as rendered
    kind: str
    faces: np.ndarray | None = None  # (2, T, S, S, 3) for "two_face"
    speaker: int | None = None  # index into faces of the face that follows the audio
    seed: int = 0


@dataclass(frozen=True)
class _Source:
    samples: np.ndarray  # speech without noise, (frames * HOP,)
    opening: np.ndarray  # per source frame, 0..1
    vowel: np.ndarray  # per source frame, index into VOWELS


def split_seed(split: str, index: int) -> int:
    """A deterministic seed for clip ``index`` of ``split``; splits never share seeds."""
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r} (train, val or test)")
    return _SPLITS[split] * 10_000_000 + index


def make_clip(seed: int, config: SynthConfig = SynthConfig(), kind: str = "constant",
              offset: int | None = None) -> SynthClip:
    """One clip of ``kind``; ``offset`` None draws it uniformly in ``-K..K`` from the seed."""
    if kind not in KINDS:
        raise ValueError(f"unknown clip kind {kind!r} ({', '.join(KINDS)})")
    rng = np.random.default_rng(seed)
    t_len, k = config.num_frames, config.max_offset
    total = t_len + 2 * MARGIN
    source = _speech_source(rng, total)
    base = int(rng.integers(-k, k + 1)) if offset is None else int(offset)
    schedule = _offset_schedule(rng, kind, base, t_len, k)
    labels, valid = _labels_from_schedule(schedule)
    starts = (np.arange(t_len) + schedule + MARGIN) * HOP  # audio frame u <- source frame u + o(u)
    speech = source.samples[starts[:, None] + np.arange(HOP)[None, :]].reshape(-1)
    audio = _add_noise(rng, speech, config.snr_db)

    opening = source.opening[MARGIN:MARGIN + t_len]
    vowel = source.vowel[MARGIN:MARGIN + t_len]
    frames = _render_face(rng, opening, vowel, config)
    if config.corrupt:
        from syncopt.data.mouthrender import corrupt_video

        frames = corrupt_video(frames, rng)[0]
    faces = speaker = None
    if kind == "two_face":
        other = _speech_source(rng, total)
        other_frames = _render_face(rng, other.opening[MARGIN:MARGIN + t_len], other.vowel[MARGIN:MARGIN + t_len],
                                    config)
        speaker = int(rng.integers(0, 2))
        faces = np.stack([frames, other_frames] if speaker == 0 else [other_frames, frames])
    values, counts = np.unique(labels[valid], return_counts=True)
    clip_offset = int(values[np.argmax(counts)]) if len(values) else base
    return SynthClip(frames=frames, audio=audio.astype(np.float32), offset=clip_offset, per_frame_offset=labels,
                     per_frame_valid=valid, mouth_opening=opening.astype(np.float32), kind=kind, faces=faces,
                     speaker=speaker, seed=seed)


def make_clips(split: str, count: int, config: SynthConfig = SynthConfig(), kinds: dict[str, float] | None = None,
               workers: int = 1, indices: Sequence[int] | None = None) -> list[SynthClip]:
    """``count`` clips of ``split`` (or the clips numbered ``indices``: one rank's shard); each
    clip's kind is drawn from ``kinds`` by its own seed."""
    kinds = kinds or {"constant": 1.0}
    names, weights = list(kinds), np.array(list(kinds.values()), dtype=float)
    jobs = []
    for i in range(count) if indices is None else indices:
        seed = split_seed(split, i)
        kind = names[int(np.random.default_rng([seed, 7]).choice(len(names), p=weights / weights.sum()))]
        jobs.append((seed, config, kind))
    if workers <= 1 or len(jobs) < 8:
        return [make_clip(*job) for job in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_make_clip_job, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def _make_clip_job(job: tuple[int, SynthConfig, str]) -> SynthClip:
    return make_clip(*job)


# ---------------------------------------------------------------- audio


def _speech_source(rng: np.random.Generator, frames: int) -> _Source:
    """Syllables and pauses filling ``frames`` video frames of audio, with per-frame mouth targets."""
    n = frames * HOP
    t = np.arange(n) / SAMPLE_RATE
    f0_base = rng.uniform(90, 240)
    f0 = f0_base * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 6.3)))
    f0 *= 1 + 0.01 * gaussian_filter1d(rng.standard_normal(n), 40)  # jitter
    phase = np.cumsum(f0 / SAMPLE_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal cycle
    glottal = lfilter([1.0], [1.0, -0.95], pulses)  # spectral tilt of the glottal source

    samples = np.zeros(n)
    envelope = np.zeros(n)
    vowel_track = np.full(n, -1, dtype=np.int64)
    pos = int(rng.uniform(0, 0.3) * SAMPLE_RATE)
    while pos < n:
        length = int(rng.uniform(0.10, 0.35) * SAMPLE_RATE)
        seg = slice(pos, min(n, pos + length))
        m = seg.stop - seg.start
        v = int(rng.integers(0, len(VOWELS)))
        env = _syllable_envelope(m, rng) * rng.uniform(0.5, 1.0)
        voiced = _formant_filter(glottal[seg], VOWELS[_VOWEL_NAMES[v]][0])
        voiced /= np.abs(voiced).max() + 1e-9
        samples[seg] += voiced * env
        envelope[seg] = np.maximum(envelope[seg], env)
        vowel_track[seg] = v
        if rng.random() < 0.3:  # fricative onset: high-passed noise, mouth nearly closed
            burst = min(int(rng.uniform(0.03, 0.08) * SAMPLE_RATE), seg.start)
            noise = lfilter([1, -1], [1], rng.standard_normal(burst)) * 0.15 * rng.uniform(0.3, 1.0)
            samples[seg.start - burst:seg.start] += noise
        pos = seg.stop + (int(rng.uniform(0.05, 0.4) * SAMPLE_RATE) if rng.random() < 0.45 else 0)
    frame_env = envelope.reshape(frames, HOP).mean(1)
    opening = np.clip(gaussian_filter1d(frame_env, 0.6), 0, 1)
    centre = vowel_track.reshape(frames, HOP)[:, HOP // 2]
    return _Source(samples=samples, opening=opening, vowel=centre)


def _syllable_envelope(m: int, rng: np.random.Generator) -> np.ndarray:
    attack = max(1, int(m * rng.uniform(0.15, 0.35)))
    decay = max(1, int(m * rng.uniform(0.25, 0.45)))
    sustain = max(0, m - attack - decay)
    env = np.concatenate([0.5 - 0.5 * np.cos(np.linspace(0, np.pi, attack)), np.ones(sustain),
                          0.5 + 0.5 * np.cos(np.linspace(0, np.pi, decay))])
    return env[:m]


def _formant_filter(x: np.ndarray, formants: tuple[int, int, int]) -> np.ndarray:
    """Cascade of two-pole resonators at the formant frequencies (bandwidths 80-120 Hz)."""
    for f, bw in zip(formants, (80, 100, 120)):
        r = np.exp(-np.pi * bw / SAMPLE_RATE)
        theta = 2 * np.pi * f / SAMPLE_RATE
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    return x


def _add_noise(rng: np.random.Generator, speech: np.ndarray, snr_db: float) -> np.ndarray:
    speech = speech / (np.abs(speech).max() + 1e-9) * 0.6
    rms = np.sqrt(np.mean(speech ** 2)) + 1e-9
    noise = lfilter([1.0], [1.0, -0.7], rng.standard_normal(len(speech)))  # mildly pink
    noise *= rms / (np.sqrt(np.mean(noise ** 2)) + 1e-9) * 10 ** (-snr_db / 20)
    mixed = speech + noise
    return mixed / max(np.abs(mixed).max() / 0.9, 1.0)


# ---------------------------------------------------------------- offsets


def _offset_schedule(rng: np.random.Generator, kind: str, base: int, t_len: int, k: int) -> np.ndarray:
    """Offset of each audio frame ``u``."""
    schedule = np.full(t_len, base, dtype=np.int64)
    if kind == "drift":
        end = int(np.clip(base + rng.choice([-1, 1]) * rng.integers(3, 9), -k, k))
        if abs(end - base) < 3:
            end = base + (3 if base <= 0 else -3)
        schedule = np.round(np.linspace(base, end, t_len)).astype(np.int64)
    elif kind == "cutin":
        length = int(t_len * rng.uniform(0.2, 0.45))
        start = int(rng.integers(t_len // 10, t_len - length - t_len // 10 + 1))
        other = base
        while abs(other - base) < 3:
            other = int(rng.integers(-k, k + 1))
        schedule[start:start + length] = other
    return schedule


def _labels_from_schedule(schedule: np.ndarray, guard: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Per video frame: the offset of the audio frame that carries it (``t = u + o(u)``)."""
    t_len = len(schedule)
    labels = np.zeros(t_len, dtype=np.int64)
    hits = np.zeros(t_len, dtype=np.int64)
    for u, o in enumerate(schedule):
        t = u + o
        if 0 <= t < t_len:
            labels[t] = o
            hits[t] += 1
    valid = hits == 1
    unset = np.flatnonzero(hits == 0)
    if len(unset) and valid.any():  # label unmatched frames by the nearest matched one (kept invalid)
        matched = np.flatnonzero(hits > 0)
        labels[unset] = labels[matched[np.abs(matched[None, :] - unset[:, None]).argmin(1)]]
    elif not valid.any():
        labels[:] = schedule
    changes = np.flatnonzero(np.diff(labels) != 0)
    for c in changes:
        valid[max(0, c - guard + 1):c + guard + 1] = False
    return labels, valid


# ---------------------------------------------------------------- video


def _smooth_walk(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    walk = gaussian_filter1d(rng.standard_normal(n), sigma, mode="nearest")
    return walk / (np.abs(walk).max() + 1e-9)


def _render_face(rng: np.random.Generator, opening: np.ndarray, vowel: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Frames ``(T, S, S, 3)`` uint8 of a face whose mouth follows ``opening`` and ``vowel``."""
    s, t_len = config.crop_size, len(opening)
    motion = config.motion
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) / s  # unit coordinates
    y, x = y[None], x[None]

    cx = 0.5 + motion * (rng.uniform(-0.04, 0.04) + 0.03 * _smooth_walk(rng, t_len, 6))[:, None, None]
    cy = 0.47 + motion * (rng.uniform(-0.03, 0.03) + 0.02 * _smooth_walk(rng, t_len, 6))[:, None, None]
    scale = (1 + motion * (rng.uniform(-0.06, 0.06) + 0.03 * _smooth_walk(rng, t_len, 10)))[:, None, None]

    if config.distractors:
        bg = rng.uniform(0.1, 0.9, 3)
        texture = gaussian_filter1d(gaussian_filter1d(rng.standard_normal((s, s)), s / 8, 0), s / 8, 1)
        texture = 0.25 * texture / (np.abs(texture).max() + 1e-9)
        light = 1 + 0.15 * _smooth_walk(rng, t_len, 12)[:, None, None, None]
    else:
        bg, texture, light = np.array([0.5, 0.5, 0.5]), np.zeros((s, s)), np.ones((t_len, 1, 1, 1))
    skin = np.array([rng.uniform(0.55, 0.95), rng.uniform(0.4, 0.75), rng.uniform(0.3, 0.6)])
    image = np.broadcast_to((bg[None, None, :] + texture[..., None])[None], (t_len, s, s, 3)).copy()

    def paint(mask: np.ndarray, colour: np.ndarray) -> None:
        image[:] = image * (1 - mask[..., None]) + colour * mask[..., None]

    def ellipse(ex, ey, rx, ry) -> np.ndarray:
        d = np.sqrt(((x - ex) / rx) ** 2 + ((y - ey) / ry) ** 2)
        return np.clip((1 - d) * np.minimum(rx, ry) * s * 1.5 + 0.5, 0, 1)  # ~1 px soft edge

    paint(ellipse(cx, cy, 0.36 * scale, 0.46 * scale), skin)
    blink = np.ones(t_len)
    if config.distractors:
        for start in rng.integers(0, t_len, size=max(1, t_len // 60)):
            blink[start:start + 3] = 0.15
    eye_h = (0.035 * blink)[:, None, None] * scale
    for side in (-1, 1):
        paint(ellipse(cx + side * 0.14 * scale, cy - 0.12 * scale, 0.06 * scale, eye_h), np.array([0.1, 0.08, 0.08]))
    paint(ellipse(cx, cy + 0.04 * scale, 0.03 * scale, 0.08 * scale), skin * 0.8)

    shape = np.array([VOWELS[_VOWEL_NAMES[v]][1] if v >= 0 else (0.3, 1.0) for v in vowel])
    mouth_y = cy + 0.25 * scale
    if config.mouth == "contour":
        _contour_mouth(rng, image, opening, shape, cx[:, 0, 0], mouth_y[:, 0, 0], scale[:, 0, 0], skin)
        image *= light
        return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if config.mouth != "ellipse":
        raise ValueError(f"unknown mouth {config.mouth!r} (ellipse or contour)")
    height = (0.012 + 0.11 * opening * shape[:, 0])[:, None, None] * scale
    width = (0.13 * (0.75 + 0.25 * shape[:, 1] * (0.5 + opening)))[:, None, None] * scale
    paint(ellipse(cx, mouth_y, width + 0.015, height + 0.015), np.array([0.65, 0.25, 0.25]) * skin / skin.max())
    paint(ellipse(cx, mouth_y, width, height), np.array([0.12, 0.03, 0.05]))
    if config.occlusion and rng.random() < config.occlusion:
        start = int(rng.integers(0, t_len // 2))
        stop = start + int(rng.integers(t_len // 5, t_len // 2))
        side = rng.choice([-1, 1])
        block = ((x - cx) * side > rng.uniform(-0.05, 0.05)) & (np.abs(y - mouth_y) < 0.12)
        mask = np.zeros((t_len, s, s), np.float32)
        mask[start:stop] = block[start:stop]
        paint(mask, np.array(rng.uniform(0.2, 0.8, 3)))
    image *= light
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _contour_mouth(rng: np.random.Generator, image: np.ndarray, opening: np.ndarray, shape: np.ndarray,
                   cx: np.ndarray, mouth_y: np.ndarray, scale: np.ndarray, skin: np.ndarray) -> None:
    """Paint the lip model's mouth (syncopt.data.lipmodel / mouthrender) into ``image (T, S, S, 3)``.

    The source's opening and vowel shape become lip parameters: open = opening x height factor;
    a vowel wider than neutral spreads, a narrower one rounds and protrudes."""
    from syncopt.data.lipmodel import Face, deform
    from syncopt.data.mouthrender import draw_mouth, mouth_colours

    s = image.shape[1]
    params = np.zeros((len(opening), 4))
    params[:, 0] = np.clip(opening * shape[:, 0], 0, 1)
    params[:, 1] = np.clip(2 * (shape[:, 1] - 1), -1, 1)
    params[:, 2] = np.clip(2 * (1 - shape[:, 1]), 0, 1)
    face = Face(width=rng.uniform(0.85, 1.15), thickness=rng.uniform(0.75, 1.3), amplitude=0.45)
    lips = deform(params, face)[..., :2]
    lips = lips - lips[:, :20].mean(axis=(0, 1))
    colours = mouth_colours(skin, rng)
    k = 0.26 / 0.59  # unit-crop mouth width (the ellipse mouth's) over the template's, inter-ocular units
    for t in range(len(opening)):
        px = (lips[t] * np.array([1.0, -1.0]) * k * scale[t] + np.array([cx[t], mouth_y[t]])) * s
        image[t] = draw_mouth(image[t], px[:20], px[20:], colours)
