"""Real TTS speech with phone timings (syncopt.data.tts): one-line errors without the engines, timings that
tile the audio and line up with its energy."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from syncopt.data import tts
from syncopt.core.errors import BackendUnavailable, UsageError

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (make tts)")
needs_festival = pytest.mark.skipif("festival_slt_hts" not in tts.available_voices(),
                                    reason="festival or festvox-us-slt-hts not installed (make tts)")


@pytest.mark.parametrize("voice,package", [("flite_slt", "flite"), ("festival_slt_hts", "festival")])
def test_missing_binary_is_a_one_line_error_naming_the_package(voice, package, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no engine on the PATH
    with pytest.raises(BackendUnavailable) as info:
        tts.speak("bin blue at F two now", voice)
    message = str(info.value)
    assert "\n" not in message and f"Debian package {package}" in message
    assert tts.available_voices() == []


def test_unknown_voice_and_empty_text_are_usage_errors():
    with pytest.raises(UsageError, match="unknown TTS voice"):
        tts.speak("hello", "nosuch")
    with pytest.raises(UsageError, match="nothing to speak"):
        tts.speak("  \"()  ", "flite_slt")


def test_sentences_follow_the_grammars():
    rng = np.random.default_rng(3)
    for _ in range(20):
        words = tts.sentence(rng, "grid").split()
        assert len(words) == 6 and words[0] in tts.GRID[0] and words[-1] in tts.GRID[-1]
    assert len({tts.sentence(rng, "mixed") for _ in range(30)}) > 20


def _check_timings(speech: tts.Speech, tolerance: float) -> None:
    assert len(speech.phones) == len(speech.starts) == len(speech.ends) > 5
    assert speech.starts[0] == 0 and np.all(np.diff(speech.ends) > 0) and np.all(speech.ends > speech.starts)
    np.testing.assert_array_equal(speech.starts[1:], speech.ends[:-1])  # phones tile the utterance
    assert abs(speech.ends[-1] - speech.duration) < tolerance  # ... and cover its audio
    # Pauses are quiet and vowels loud: the timings belong to this audio.
    power = np.square(speech.audio.astype(np.float64))

    def level(names: set[str]) -> float:
        spans = [(a, b) for p, a, b in zip(speech.phones, speech.starts, speech.ends) if p in names]
        return float(np.mean([power[int(a * 16000):int(b * 16000)].mean() for a, b in spans]))

    vowels = {"aa", "ae", "ah", "ao", "aw", "ay", "eh", "ey", "ih", "iy", "ow", "oy", "uh", "uw", "er", "ax"}
    assert level(vowels) > 30 * level({"pau"})


@needs_flite
@pytest.mark.parametrize("voice", ["flite_slt", "flite_rms"])
def test_flite_timings_are_monotonic_and_cover_the_audio(voice):
    speech = tts.speak("place green by Q seven again", voice, rate=1.2, pitch=150)
    assert speech.phones[0] == "pau" and "uw" in speech.phones and "v" in speech.phones
    _check_timings(speech, tolerance=0.02)
    slower = tts.speak("place green by Q seven again", voice, rate=0.8)
    assert slower.duration > 1.3 * speech.duration


@needs_festival
def test_festival_timings_for_several_sentences_in_one_process():
    texts = ["set white in F seven again", "the quiet fisherman chose two ropes.", "set white in F seven again"]
    speeches = tts.speak_many(texts, "festival_slt_hts", rate=[1.0, 1.0, 1.4])
    assert [s.text for s in speeches] == texts
    for speech in speeches:
        _check_timings(speech, tolerance=0.03)
    assert speeches[2].duration < 0.8 * speeches[0].duration  # each sentence at its own rate


def test_a_missing_festival_voice_is_a_one_line_error(monkeypatch):
    if shutil.which("festival") is None:
        pytest.skip("festival not installed (make tts)")
    monkeypatch.setitem(tts.VOICES, "festival_nosuch", ("festival", "voice_nosuch_voice_hts", "festvox-nosuch"))
    assert "festival_nosuch" not in tts.available_voices()
    with pytest.raises(BackendUnavailable, match="Debian package festvox-nosuch") as info:
        tts.speak("hello there", "festival_nosuch")
    assert "\n" not in str(info.value)
