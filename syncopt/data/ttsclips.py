"""Training clips for lip models from real TTS speech: face-mesh lip motion driven by the speech's own
phones, with the audio and landmark corruptions real video has.

A clip is 2-4 sentences by one voice (:mod:`syncopt.data.tts`) with pauses between them, spoken by
one drawn speaker (:func:`syncopt.data.visemes.random_articulation`) and filmed face
(:func:`syncopt.data.lipmodel.random_face`: size, landmark noise, head pose and motion); now and then
the speaker smiles, which moves the lips without sound. The audio gets a random level, additive
noise (white, pink or brown, 5-40 dB SNR), sometimes room reverberation or a telephone band. Clips
are in sync by construction (the lips lead the sound as real ones do); each synthesised speech is
rendered as ``variants`` clips (other speaker, face and corruptions: the engines are the slow
part). Training draws audio shifts as labels, as for real clips
(:class:`syncopt.data.datasets.Augment`); :func:`shifted_item` makes a labelled pair for a given
offset. Every clip is a pure function of (settings, split, index) and is
cached on disk (``$SYNCOPT_TTS_CACHE``, default ``$SYNCOPT_CACHE/../tts``, by a hash of the settings and
the generator's code).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from syncopt.core.errors import UsageError

GENERATOR_VERSION = 1
FPS, SAMPLE_RATE, STEPS = 25.0, 16000, 4  # video frames/s, audio Hz, MFCC columns per frame
SPLIT_SEEDS = {"train": 101, "val": 202, "test": 303}
DEFAULT_VOICES = ("flite_slt", "flite_awb", "flite_rms", "festival_slt_hts", "festival_kal")
_HERE = Path(__file__).resolve().parent
_GENERATOR_FILES = (*(_HERE / f for f in ("tts.py", "visemes.py", "lipmodel.py", "ttsclips.py", "lipfeatures.py")),
                    _HERE.parent / "assets" / "lip_template.json")


@dataclass(frozen=True)
class TTSConfig:
    """Generator settings (recorded with weights trained on its clips)."""

    voices: tuple[str, ...] = DEFAULT_VOICES
    grammar: str = "mixed"
    rate: tuple[float, float] = (0.8, 1.35)
    sentences: tuple[int, int] = (2, 4)
    pause_s: tuple[float, float] = (0.05, 0.7)
    edge_silence_s: tuple[float, float] = (0.1, 0.8)
    snr_db: tuple[float, float] = (5.0, 40.0)
    reverb: float = 0.3  # probability of room reverberation
    telephone: float = 0.15  # probability of a 300-3400 Hz band
    smiles_per_s: float = 0.08
    variants: int = 3  # clips rendered from one synthesised speech (other speaker, face, corruption)
    seed: int = 0
    version: int = GENERATOR_VERSION

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def digest(self) -> str:
        """Hash of the settings and of the generator's code and lip template (an edit regenerates clips)."""
        h = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode())
        for path in _GENERATOR_FILES:
            h.update(path.read_bytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class SyntheticClip:
    """A TTS clip's signals, shaped like :class:`syncopt.data.lipcache.ClipFeatures` (the shift
    evaluation and the lip datasets read the same fields)."""

    name: str
    lips: np.ndarray  # (n, 40, 3) pose-free lip shape (lip_shape of the filmed mesh)
    opening: np.ndarray  # (n,) inner-lip opening / inter-ocular distance
    mfcc: np.ndarray  # (13, 4n)
    energy: np.ndarray  # (n,)
    meta: dict = field(default_factory=dict)
    start: int = 0

    @property
    def frames(self) -> int:
        return len(self.lips)

    @property
    def num_frames(self) -> int:
        return len(self.lips)

    @property
    def sha256(self) -> str:
        return self.name


def _plan(cfg: TTSConfig, split: str, speech: int) -> tuple[str, list[str], list[float]]:
    """Speech number ``speech``: its voice, sentences and their rates."""
    from syncopt.data.tts import sentence

    if split not in SPLIT_SEEDS:
        raise UsageError(f"unknown split {split!r}; choose from {', '.join(SPLIT_SEEDS)}")
    rng = np.random.default_rng([cfg.seed, SPLIT_SEEDS[split], speech, cfg.version])
    voice = str(rng.choice(cfg.voices))
    count = int(rng.integers(cfg.sentences[0], cfg.sentences[1] + 1))
    texts = [sentence(rng, cfg.grammar) for _ in range(count)]
    rate = float(rng.uniform(*cfg.rate))
    return voice, texts, [rate * float(rng.uniform(0.93, 1.07)) for _ in texts]


def _render_rng(cfg: TTSConfig, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, SPLIT_SEEDS[split], index, cfg.version, 1])


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White, pink or brown noise of unit RMS."""
    white = rng.standard_normal(n)
    colour = rng.integers(0, 3)
    if colour == 0:
        return white
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    coloured = np.fft.irfft(spectrum / (np.sqrt(f) if colour == 1 else f), n)
    return coloured / max(float(np.sqrt(np.mean(coloured ** 2))), 1e-12)


def corrupt_audio(audio: np.ndarray, cfg: TTSConfig, rng: np.random.Generator) -> np.ndarray:
    """Reverberation, a telephone band, noise at a random SNR and a random level."""
    from scipy import signal

    x = audio.astype(np.float64)
    if rng.random() < cfg.reverb:  # exponentially decaying noise as a room response (RT60 0.15-0.6 s)
        rt60 = rng.uniform(0.15, 0.6)
        t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        ir[0] = 1.0 / rng.uniform(0.2, 0.6)  # the direct sound
        x = signal.fftconvolve(x, ir)[:len(x)]
    if rng.random() < cfg.telephone:
        x = signal.sosfilt(signal.butter(4, (300, 3400), btype="bandpass", fs=SAMPLE_RATE, output="sos"), x)
    speech_rms = float(np.sqrt(np.mean(x[np.abs(x) > 0.1 * np.abs(x).max()] ** 2))) if np.any(x) else 1.0
    snr = rng.uniform(*cfg.snr_db)
    x = x + _noise(rng, len(x)) * speech_rms * 10 ** (-snr / 20)
    x = x / max(float(np.abs(x).max()), 1e-9) * rng.uniform(0.05, 0.9)
    return x.astype(np.float32)


def _assemble(speeches, cfg: TTSConfig, rng: np.random.Generator) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """One waveform of the sentences with pauses, and its phones' labels, starts and ends."""
    pieces, labels, starts, ends = [], [], [], []
    t = 0.0

    def silence(seconds: float) -> None:
        nonlocal t
        n = int(round(seconds * SAMPLE_RATE))
        pieces.append(np.zeros(n, np.float32))
        labels.append("pau"), starts.append(t), ends.append(t + n / SAMPLE_RATE)
        t += n / SAMPLE_RATE

    silence(rng.uniform(*cfg.edge_silence_s))
    for i, sp in enumerate(speeches):
        if i:
            silence(rng.uniform(*cfg.pause_s))
        pieces.append(sp.audio)
        labels.extend(sp.phones), starts.extend(t + sp.starts), ends.extend(t + sp.ends)
        t += sp.duration
    silence(rng.uniform(*cfg.edge_silence_s))
    return np.concatenate(pieces), labels, np.asarray(starts), np.asarray(ends)


def render(speeches, cfg: TTSConfig, rng: np.random.Generator, name: str) -> SyntheticClip:
    """A clip from synthesised sentences: lips from their phones, corrupted audio, features."""
    from syncopt.data import lipmodel, visemes
    from syncopt.data.lipfeatures import mouth_opening, speech_energy
    from syncopt.data.media import mfcc_for_frames

    audio, phones, starts, ends = _assemble(speeches, cfg, rng)
    n = int(len(audio) / SAMPLE_RATE * FPS)
    audio = audio[:int(round(n * SAMPLE_RATE / FPS))]
    art = visemes.random_articulation(rng)
    face = lipmodel.random_face(rng)
    # Parameters at 100 Hz averaged over each frame's 40 ms (the camera integrates over its exposure).
    times = (np.arange(n * STEPS) + 0.5) / (FPS * STEPS)
    params = visemes.trajectories(phones, starts, ends, times, art).reshape(n, STEPS, -1).mean(1)
    params[:, 0] += 0.03 * np.sin(np.cumsum(rng.uniform(0, 0.2, n)))  # a mouth is never quite still
    smile = np.zeros(n)
    for _ in range(rng.poisson(cfg.smiles_per_s * n / FPS)):  # speech-free lip motion
        c, w = rng.uniform(0, n), rng.uniform(5, 40)
        smile += rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((np.arange(n) - c) / w) ** 2)
    mesh, shape = lipmodel.film(lipmodel.deform(params, face, smile), face, rng)
    audio = corrupt_audio(audio, cfg, rng)
    meta = {"voice": speeches[0].voice, "texts": [s.text for s in speeches], "articulation": art.to_dict(),
            "face": face.to_dict()}
    return SyntheticClip(name=name, lips=shape, opening=mouth_opening(mesh), mfcc=mfcc_for_frames(audio, n),
                         energy=speech_energy(audio, n), meta=meta)


def cache_dir(cfg: TTSConfig) -> Path:
    """Where clips of ``cfg`` are kept: ``$SYNCOPT_TTS_CACHE`` or next to the lip cache, by settings hash."""
    from syncopt.data.lipcache import default_cache_dir

    root = Path(os.environ["SYNCOPT_TTS_CACHE"]) if os.environ.get("SYNCOPT_TTS_CACHE") else \
        default_cache_dir().parent / "tts"
    return root / cfg.digest()


def _save(clip: SyntheticClip, path: Path) -> None:
    from syncopt.core.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, lips=clip.lips, opening=clip.opening, mfcc=clip.mfcc, energy=clip.energy,
                                meta=json.dumps(clip.meta))


def _load(path: Path, name: str) -> SyntheticClip:
    with np.load(path) as d:
        return SyntheticClip(name=name, lips=d["lips"], opening=d["opening"], mfcc=d["mfcc"], energy=d["energy"],
                             meta=json.loads(str(d["meta"])))


def _path(cfg: TTSConfig, split: str, index: int) -> tuple[str, Path]:
    return f"tts-{cfg.digest()}-{split}-{index}", cache_dir(cfg) / f"{split}_{index}.npz"


def make_clip(cfg: TTSConfig, split: str, index: int, cache: bool = True) -> SyntheticClip:
    """Clip ``index`` of ``split`` (read from the cache when there)."""
    return _make_group((cfg, split, index // cfg.variants, [index], cache))[0]


def _make_group(job: tuple[TTSConfig, str, int, list[int], bool]) -> list[SyntheticClip]:
    """Clips ``indices`` (variants of speech number ``speech``): the speech is synthesised once, if any is missing."""
    from syncopt.data.tts import speak_many

    cfg, split, speech, indices, cache = job
    out: dict[int, SyntheticClip] = {}
    for i in indices:
        name, path = _path(cfg, split, i)
        if cache and path.is_file():
            out[i] = _load(path, name)
    missing = [i for i in indices if i not in out]
    if missing:
        voice, texts, rates = _plan(cfg, split, speech)
        speeches = speak_many(texts, voice, rates)
        for i in missing:
            name, path = _path(cfg, split, i)
            out[i] = render(speeches, cfg, _render_rng(cfg, split, i), name)
            if cache:
                _save(out[i], path)
    return [out[i] for i in indices]


def make_clips(cfg: TTSConfig, split: str, indices: list[int], workers: int = 1, cache: bool = True,
               progress=None) -> list[SyntheticClip]:
    """Clips ``indices`` of ``split``, generated in ``workers`` processes (the engines run as subprocesses);
    the ``cfg.variants`` clips of one speech share its synthesis."""
    from syncopt.data.tts import ENGINE_PACKAGE, VOICES, require

    unknown = [v for v in cfg.voices if v not in VOICES]
    if unknown:
        raise UsageError(f"unknown TTS voice(s) {unknown}; choose from {', '.join(VOICES)}")
    for engine in sorted({VOICES[v][0] for v in cfg.voices}):
        require(engine, ENGINE_PACKAGE[engine])  # one clear error before any worker starts
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(i // cfg.variants, []).append(i)
    jobs = [(cfg, split, speech, members, cache) for speech, members in groups.items()]
    made: dict[int, SyntheticClip] = {}
    done = 0

    def collect(clips: list[SyntheticClip], members: list[int]) -> None:
        nonlocal done
        made.update(zip(members, clips))
        done += len(members)
        if progress is not None:
            progress(done, len(indices))

    if workers <= 1 or len(jobs) < 2:
        for job in jobs:
            collect(_make_group(job), job[3])
    else:
        with ProcessPoolExecutor(workers) as pool:
            for job, clips in zip(jobs, pool.map(_make_group, jobs, chunksize=2)):
                collect(clips, job[3])
    return [made[i] for i in indices]


def clip_items(clip: SyntheticClip, offset: int = 0, segment: int | None = None) -> list[dict]:
    """Lip-model items (``video`` (120, T), ``audio`` (1, 13, 4T), ``labels``, ``valid``) of ``clip``,
    as :func:`syncopt.data.datasets._lip_items` makes them of real clips: whole, or cut into segments."""
    from syncopt.data.lipfeatures import lip_inputs

    video, audio = lip_inputs(clip.lips, clip.mfcc)
    item = _item(video, audio, 0, clip.name)
    if offset:
        item = shifted_item(item, offset)
    if segment is None:
        return [item]
    t = item["labels"].shape[0]
    bounds = np.linspace(0, t, max(1, round(t / segment)) + 1).round().astype(int)
    return [_item(item["video"][:, a:b], item["audio"][..., STEPS * a:STEPS * b], offset, clip.name)
            for a, b in zip(bounds[:-1], bounds[1:])] if len(bounds) > 2 else [item]


def _item(video, audio, offset: int, name: str) -> dict:
    import torch

    t = video.shape[-1]
    return {"video": video, "audio": audio, "labels": torch.full((t,), offset, dtype=torch.int64),
            "valid": torch.ones(t, dtype=torch.bool), "offset": offset, "kind": "constant", "sha256": name}


def shifted_item(item: dict, k: int) -> dict:
    """An in-sync item re-paired at offset ``k`` (video frame t matches audio frame t - k): both streams
    cropped to the |k| frames they no longer share."""
    t = item["video"].shape[-1]
    if abs(k) >= t:
        raise UsageError(f"offset {k} leaves nothing of a {t}-frame clip")
    v0, a0, length = max(-k, 0), max(k, 0), t - abs(k)  # video v0 + t with audio a0 + t = (v0 + t) - k
    return _item(item["video"][:, v0:v0 + length], item["audio"][..., STEPS * a0:STEPS * (a0 + length)], k,
                 item.get("sha256", ""))


def tts_dataset(spec, split: str, count: int, cfg: TTSConfig | None = None, workers: int = 1,
                indices: list[int] | None = None, segment: int | None = None, progress=None):
    """A :class:`~syncopt.data.datasets.ClipDataset` of ``count`` TTS clips (or those numbered ``indices``)
    for a lip model ``spec``; items in sync (offset 0), for audio-shift augmentation."""
    from syncopt.data.datasets import ClipDataset

    if spec.preprocessing.video_features != "lips":
        raise UsageError(f"TTS clips are face-mesh lip motion; {spec.name} reads pixels (use --data synth)")
    cfg = cfg or TTSConfig()
    clips = make_clips(cfg, split, list(range(count)) if indices is None else indices, workers, progress=progress)
    return ClipDataset([it for c in clips for it in clip_items(c, segment=segment)], spec.preprocessing)


def generator_settings(cfg: TTSConfig) -> dict:
    """What a weights manifest records about the TTS domain: settings, engines, template."""
    from syncopt.core.atomic import sha256_file
    from syncopt.data.lipmodel import TEMPLATE
    from syncopt.data.tts import engine_versions

    return {"generator": "syncopt.data.ttsclips", "settings": cfg.to_dict(), "settings_digest": cfg.digest(),
            "engines": engine_versions(), "lip_template_sha256": sha256_file(TEMPLATE)}
