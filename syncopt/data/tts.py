"""Speech from a real text-to-speech engine, with the phone timings the lip model of :mod:`syncopt.data.visemes` needs.

Two engines, both Debian packages called as subprocesses (``make tts`` installs them):

- ``flite`` (CMU Flite 2.2): ``-psdur`` prints every segment with its end time; the clustergen
  voices ``slt``, ``awb`` and ``rms`` (16 kHz) synthesise exactly those durations. (``kal16``, a
  diphone voice, is left out: its audio runs about 4% shorter than its printed segment times.)
- ``festival`` (2.5) with the ``cmu_us_slt_arctic_hts`` voice (package festvox-us-slt-hts) and
  ``kal_diphone`` (festvox-kallpc16k): the ``Segment`` relation's end times, printed by a Scheme
  script; several sentences share one Festival process (its start-up is most of the cost).

Both use the CMU lexicon's ARPAbet phones in lower case (``pau`` for pauses). Sentences come from
GRID's grammar (Cooke et al. 2006: command, colour, preposition, letter, digit, adverb) or from a
small prose grammar with more varied words; voices, speaking rates and pitch vary per clip.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syncopt.core.errors import BackendUnavailable, MediaError, UsageError

SAMPLE_RATE = 16000
# voice name -> (engine, engine's voice name, Debian package that provides it)
VOICES = {
    "flite_slt": ("flite", "slt", "flite"),
    "flite_awb": ("flite", "awb", "flite"),
    "flite_rms": ("flite", "rms", "flite"),
    "festival_slt_hts": ("festival", "voice_cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
    "festival_kal": ("festival", "voice_kal_diphone", "festvox-kallpc16k"),
}
ENGINE_PACKAGE = {"flite": "flite", "festival": "festival"}


@dataclass(frozen=True)
class Speech:
    """One synthesised utterance: 16 kHz mono audio and its phones with start and end times (seconds)."""

    text: str
    voice: str
    audio: np.ndarray  # (samples,) float32 in -1..1
    phones: tuple[str, ...]
    starts: np.ndarray  # (p,) seconds
    ends: np.ndarray  # (p,) seconds

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def require(binary: str, package: str) -> str:
    """The path of ``binary``, or a one-line error naming the Debian package that provides it."""
    path = shutil.which(binary)
    if path is None:
        raise BackendUnavailable(f"{binary} not found on PATH: install the Debian package {package} "
                                 f"(apt-get install {package}, or `make tts`)")
    return path


def available_voices() -> list[str]:
    """Voices of :data:`VOICES` whose engine and voice package are installed."""
    out = []
    for name, (engine, voice, package) in VOICES.items():
        if shutil.which(engine) is None:
            continue
        if engine == "festival" and not _festival_voice_dir(voice):
            continue
        out.append(name)
    return out


def _festival_voice_dir(voice: str) -> bool:
    stem = voice.removeprefix("voice_")
    roots = ("/usr/share/festival/voices", "/usr/local/share/festival/voices")
    return any(any(Path(root).glob(f"*/{stem}")) for root in roots)


def speak(text: str, voice: str = "flite_slt", rate: float = 1.0, pitch: float | None = None,
          timeout: float = 120.0) -> Speech:
    """``text`` spoken by ``voice`` at ``rate`` (1 = the voice's own speed, 1.2 = 20% faster)."""
    return speak_many([text], voice, rate, pitch, timeout)[0]


def speak_many(texts: list[str], voice: str = "flite_slt", rate: float | list[float] = 1.0,
               pitch: float | None = None, timeout: float = 300.0) -> list[Speech]:
    """Several sentences by one voice (one Festival process for all of them; Flite runs per sentence),
    at one ``rate`` or one per sentence.

    ``pitch`` sets Flite's mean F0 in Hz (None: the voice's own); Festival ignores it.
    """
    if voice not in VOICES:
        raise UsageError(f"unknown TTS voice {voice!r}; choose from {', '.join(VOICES)}")
    rates = [float(rate)] * len(texts) if isinstance(rate, (int, float)) else [float(r) for r in rate]
    if len(rates) != len(texts):
        raise UsageError(f"{len(rates)} speaking rates for {len(texts)} sentences")
    if any(not 0.3 <= r <= 3.0 for r in rates):
        raise UsageError(f"speaking rate outside 0.3..3 in {rates}")
    texts = [_clean(t) for t in texts]  # bad text is a usage error with or without the engine installed
    engine, name, package = VOICES[voice]
    require(engine, ENGINE_PACKAGE[engine])
    with tempfile.TemporaryDirectory(prefix="syncopt_tts_") as tmp:
        if engine == "flite":
            return [_flite(t, voice, name, r, pitch, Path(tmp), timeout) for t, r in zip(texts, rates)]
        return _festival(texts, voice, name, package, rates, Path(tmp), timeout)


def _clean(text: str) -> str:
    """Text safe to hand to either engine (no quotes or Scheme specials), not empty."""
    kept = "".join(c if c.isalnum() or c in " .,?!'-" else " " for c in text).replace("'", "")
    kept = " ".join(kept.split())
    if not kept:
        raise UsageError(f"nothing to speak in {text!r}")
    return kept


def _run(command: list[str], timeout: float, what: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{what} took longer than {timeout:.0f} s") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise MediaError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}")
    return done.stdout


def _flite(text: str, voice: str, name: str, rate: float, pitch: float | None, tmp: Path, timeout: float) -> Speech:
    wav = tmp / "out.wav"
    command = ["flite", "-voice", name, "--setf", f"duration_stretch={1 / rate:.4f}"]
    if pitch is not None:
        command += ["--setf", f"int_f0_target_mean={pitch:.1f}"]
    out = _run(command + ["-psdur", "-t", text, "-o", str(wav)], timeout, f"flite ({name})")
    labels, ends = [], []
    for token in out.split():
        label, _, end = token.rpartition(":")
        try:
            ends.append(float(end))
        except ValueError:
            continue  # anything flite prints besides the segments
        labels.append(label)
    return _speech(text, voice, _read_wav(wav), labels, ends)


_FESTIVAL_UTT = """(Parameter.set 'Duration_Stretch {stretch:.4f})
(set! utt (utt.synth (Utterance Text "{text}")))
(utt.wave.resample utt {rate})
(utt.save.wave utt "{wav}" 'riff)
(format t "UTT {i}\\n")
(mapcar (lambda (s) (format t "%s %f\\n" (item.name s) (item.feat s "end"))) (utt.relation.items utt 'Segment))
"""


def _festival(texts: list[str], voice: str, name: str, package: str, rates: list[float], tmp: Path,
              timeout: float) -> list[Speech]:
    if not _festival_voice_dir(name):
        raise BackendUnavailable(f"festival voice {name.removeprefix('voice_')} not installed: install the Debian "
                                 f"package {package} (apt-get install {package}, or `make tts`)")
    script = [f"({name})"]
    stem = name.removeprefix("voice_")
    for i, (t, r) in enumerate(zip(texts, rates)):
        if stem.endswith("_hts"):  # HTS voices ignore Duration_Stretch; hts_engine's -r is the speed
            script.append(f'(set! hts_engine_params (append {stem}::hts_engine_params (list (list "-r" {r:.4f}))))')
        script.append(_FESTIVAL_UTT.format(text=t, stretch=1 / r if not stem.endswith("_hts") else 1.0,
                                           rate=SAMPLE_RATE, wav=tmp / f"{i}.wav", i=i))
    (tmp / "say.scm").write_text("\n".join(script))
    out = _run(["festival", "--batch", str(tmp / "say.scm")], timeout, f"festival ({name})")
    segments: dict[int, list[tuple[str, float]]] = {}
    current = None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "UTT":
            current = segments.setdefault(int(parts[1]), [])
        elif len(parts) == 2 and current is not None:
            try:
                current.append((parts[0], float(parts[1])))
            except ValueError:
                pass
    if len(segments) != len(texts):
        raise MediaError(f"festival ({name}) spoke {len(segments)} of {len(texts)} sentences")
    return [_speech(t, voice, _read_wav(tmp / f"{i}.wav"), [s for s, _ in segments[i]], [e for _, e in segments[i]])
            for i, t in enumerate(texts)]


def _read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV as float32 at :data:`SAMPLE_RATE` (resampled if the engine wrote another rate)."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            raw = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise MediaError(f"the TTS engine wrote no readable audio ({exc})") from exc
    if width != 2:
        raise MediaError(f"the TTS engine wrote {8 * width}-bit audio; 16-bit expected")
    audio = np.frombuffer(raw, np.int16).reshape(-1, channels).mean(1).astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = np.gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return audio


def _speech(text: str, voice: str, audio: np.ndarray, labels: list[str], ends: list[float]) -> Speech:
    if not labels:
        raise MediaError(f"the TTS engine gave no phone timings for {text!r}")
    end = np.maximum.accumulate(np.asarray(ends, np.float64))  # never backwards, whatever an engine prints
    start = np.concatenate([[0.0], end[:-1]])
    return Speech(text=text, voice=voice, audio=audio, phones=tuple(p.lower() for p in labels), starts=start, ends=end)


# GRID's sentence grammar (Cooke, Barker, Cunningham & Shao 2006, JASA 120(5)): six words, letters
# without W. Letters are written as their spoken names where an engine would read a word ("a", "i").
GRID = (("bin", "lay", "place", "set"), ("blue", "green", "red", "white"), ("at", "by", "in", "with"),
        tuple("ay B C D E F G H eye J K L M N O P Q R S T U V X Y Z".split()),
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
        ("again", "now", "please", "soon"))
# A small prose grammar for phones GRID lacks (rounded vowels, labiodentals, th, sh, ch, oy ...).
PROSE = (
    ("the", "my", "your", "a", "this", "that", "our", "their"),
    ("old", "small", "bright", "quiet", "yellow", "heavy", "smooth", "famous", "cheap", "noisy", "thin", "round"),
    ("fisherman", "teacher", "mother", "boat", "voice", "judge", "window", "shoe", "worker", "chef", "puppy", "oyster",
     "mouth", "village", "football", "photograph", "machine", "lawyer", "zebra", "whale"),
    ("moved", "found", "will bring", "should show", "saw", "pushed", "chose", "thought about", "watched", "loved",
     "fixed", "measured", "followed", "bought"),
    ("the", "every", "some", "two", "three", "few", "those"),
    ("books", "beaches", "rooms", "fruits", "mountains", "pictures", "flowers", "movies", "bottles", "feathers",
     "shoes", "wolves", "apples", "jewels", "shops", "ropes", "voices", "bridges"),
    ("today", "yesterday", "very quickly", "on Monday", "with a smile", "by the river", "after work",
     "in the morning", "for the family", "without thinking", "over the hill", "at the zoo"),
)


def sentence(rng: np.random.Generator, grammar: str = "mixed") -> str:
    """A sentence of ``grammar``: 'grid', 'prose' or 'mixed' (either, evenly)."""
    if grammar == "mixed":
        grammar = "grid" if rng.random() < 0.5 else "prose"
    if grammar not in ("grid", "prose"):
        raise UsageError(f"unknown sentence grammar {grammar!r}; choose grid, prose or mixed")
    words = [str(rng.choice(slot)) for slot in (GRID if grammar == "grid" else PROSE)]
    return " ".join(words) + ("." if grammar == "prose" else "")


def engine_versions() -> dict[str, str]:
    """Installed engine versions (for the weights manifest): first line of each ``--version``."""
    versions = {}
    for engine in ("flite", "festival"):
        if shutil.which(engine) is None:
            continue
        try:
            out = subprocess.run([engine, "--version"], capture_output=True, text=True, timeout=20, check=False)
            lines = (out.stdout or out.stderr).strip().splitlines() or ["?"]
            versions[engine] = next((ln.strip() for ln in lines if "version" in ln.lower()), lines[0].strip())
        except (OSError, subprocess.TimeoutExpired):
            versions[engine] = "?"
    return versions
