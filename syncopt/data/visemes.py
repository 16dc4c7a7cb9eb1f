"""Phones to lip-shape parameters over time: viseme targets blended by dominance functions.

Viseme classes follow the MPEG-4 facial-animation viseme table (ISO/IEC 14496-2, Annex C: 14 visemes,
``pp`` p/b/m, ``ff`` f/v, ``th``, ``dd`` t/d, ``kk`` k/g, ``ch`` ch/jh/sh, ``ss`` s/z, ``nn`` n/l,
``rr`` r, and the vowels ``aa``, ``e``, ``i``, ``o``, ``u``), extended to every ARPAbet phone of the
CMU lexicon (vowels by height and rounding, ``w``/``y``/``hh``, diphthongs as two halves). Each
class has a target for four lip parameters, hand-set from articulatory phonetics (Ladefoged &
Johnson, *A Course in Phonetics*, ch. 1 and 4: bilabials close, labiodentals raise the lower lip to
the upper teeth, /u w ʃ/ round and protrude, /i/ spreads, open vowels lower the jaw):

- ``open``: jaw and lip opening, 0 closed .. 1 widest;
- ``spread``: mouth width, -1 rounded and narrow .. +1 spread;
- ``protrude``: lips pushed forward, 0 .. 1;
- ``tuck``: lower lip raised and drawn in to the upper teeth (f, v), 0 .. 1.

Coarticulation follows Cohen & Massaro (1993, "Modeling coarticulation in synthetic visual speech",
in *Models and Techniques in Computer Animation*): a segment's dominance over a parameter is
``alpha * exp(-theta * |tau| ** c)`` at distance ``tau`` from the segment's centre, with a smaller
``theta`` before the centre than after it (gestures start early and release fast), and every
parameter is the dominance-weighted mean of the targets. Closures (p b m), labiodentals and
rounding have high ``alpha``: the lips must reach them, while alveolars and velars take their lip
shape from their neighbours. Anticipation: the wider dominance before each centre (and a speaker's
``lead``) starts lip motion ~100 ms before a phone's acoustic onset: Chandrasekaran et al. (2009,
"The natural statistics of audiovisual speech", PLoS Comput Biol 5(7)) measure mouth movements
preceding the voice by 100-300 ms; Benguerel & Cowan (1974, Phonetica 30) found lip rounding
anticipated several segments ahead. Two departures from
Cohen & Massaro: a flat top over the segment's own span (c = 1 outside it), and alphas above 1 for
closures so that /p b m/ close even between open vowels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARAMS = ("open", "spread", "protrude", "tuck")

# viseme class -> (open, spread, protrude, tuck), dominance alpha, theta (1/s after the centre)
VISEMES: dict[str, tuple[tuple[float, float, float, float], float, float]] = {
    "rest": ((0.02, 0.0, 0.0, 0.0), 0.25, 12.0),
    "pp": ((0.0, 0.0, 0.05, 0.0), 4.0, 60.0),
    "ff": ((0.06, 0.05, 0.0, 1.0), 2.0, 50.0),
    "th": ((0.18, 0.1, 0.0, 0.0), 0.5, 25.0),
    "dd": ((0.18, 0.15, 0.0, 0.0), 0.25, 25.0),
    "kk": ((0.28, 0.05, 0.0, 0.0), 0.2, 25.0),
    "ch": ((0.18, -0.45, 0.8, 0.0), 0.7, 22.0),
    "ss": ((0.12, 0.3, 0.0, 0.0), 0.45, 25.0),
    "nn": ((0.18, 0.1, 0.0, 0.0), 0.25, 25.0),
    "rr": ((0.2, -0.35, 0.5, 0.0), 0.5, 22.0),
    "w": ((0.1, -0.85, 0.9, 0.0), 1.5, 20.0),
    "y": ((0.14, 0.55, 0.0, 0.0), 0.5, 22.0),
    "hh": ((0.3, 0.0, 0.0, 0.0), 0.1, 25.0),
    "aa": ((0.95, 0.05, 0.0, 0.0), 0.7, 15.0),
    "ae": ((0.75, 0.45, 0.0, 0.0), 0.7, 15.0),
    "ah": ((0.6, 0.05, 0.0, 0.0), 0.6, 15.0),
    "ax": ((0.35, 0.0, 0.0, 0.0), 0.3, 18.0),
    "e": ((0.5, 0.45, 0.0, 0.0), 0.6, 15.0),
    "ei": ((0.4, 0.6, 0.0, 0.0), 0.6, 15.0),
    "i": ((0.32, 0.6, 0.0, 0.0), 0.6, 15.0),
    "ii": ((0.22, 0.9, 0.0, 0.0), 0.7, 15.0),
    "o": ((0.7, -0.5, 0.5, 0.0), 0.7, 15.0),
    "ou": ((0.45, -0.7, 0.7, 0.0), 0.8, 15.0),
    "uh": ((0.32, -0.55, 0.55, 0.0), 0.7, 15.0),
    "u": ((0.18, -0.95, 1.0, 0.0), 1.2, 15.0),
    "er": ((0.32, -0.3, 0.4, 0.0), 0.55, 15.0),
}
# ARPAbet (lower case, as flite and festival print it) -> one viseme, or two for a diphthong.
PHONE_VISEMES: dict[str, tuple[str, ...]] = {
    "pau": ("rest",), "sil": ("rest",), "h#": ("rest",), "brth": ("rest",),
    "p": ("pp",), "b": ("pp",), "m": ("pp",), "f": ("ff",), "v": ("ff",), "th": ("th",), "dh": ("th",),
    "t": ("dd",), "d": ("dd",), "k": ("kk",), "g": ("kk",), "ng": ("kk",), "ch": ("ch",), "jh": ("ch",),
    "sh": ("ch",), "zh": ("ch",), "s": ("ss",), "z": ("ss",), "n": ("nn",), "l": ("nn",), "r": ("rr",),
    "w": ("w",), "y": ("y",), "hh": ("hh",),
    "aa": ("aa",), "ae": ("ae",), "ah": ("ah",), "ax": ("ax",), "eh": ("e",), "ey": ("ei", "i"),
    "ih": ("i",), "iy": ("ii",), "ao": ("o",), "ow": ("ou", "u"), "uh": ("uh",), "uw": ("u",),
    "er": ("er",), "aw": ("aa", "u"), "ay": ("aa", "i"), "oy": ("ou", "ii"),
}


@dataclass(frozen=True)
class Articulation:
    """How one speaker articulates (drawn per clip by :func:`random_articulation`)."""

    strength: float = 1.0  # scales every target's distance from rest (hypo- .. hyper-articulation)
    lead: float = 0.04  # s: lip gestures lead the sound by this much
    spread_time: float = 1.0  # scales the dominance widths (1 / theta): a slower, smoother speaker above 1
    anticipation: float = 0.55  # theta before a centre = this x theta after it (wider before)
    rest_open: float = 0.02  # the mouth's opening at rest

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def random_articulation(rng: np.random.Generator) -> Articulation:
    """A speaker drawn from ranges around the defaults.

    The lead is drawn from -40..40 ms: with 0..80 ms, the real-video model fcn_lips_full_real (trained
    on real clips, none of them dev or test) put TTS clips 1-2 frames early (whole clips, 30
    test-split clips: median -1, 25 of 30 at -1 or -2) and the lip-geometry baseline agreed (mean
    -1.4), so the draw is centred one frame later, where real in-sync clips sit.
    """
    return Articulation(strength=float(np.exp(rng.uniform(np.log(0.6), np.log(1.5)))),
                        lead=float(rng.uniform(-0.04, 0.04)), spread_time=float(np.exp(rng.uniform(-0.35, 0.35))),
                        anticipation=float(rng.uniform(0.4, 0.75)), rest_open=float(rng.uniform(0.0, 0.12)))


def segments(phones: tuple[str, ...] | list[str], starts: np.ndarray, ends: np.ndarray
             ) -> list[tuple[str, float, float]]:
    """``(viseme, start, end)`` per phone (a diphthong's two halves split its time; unknown phones rest)."""
    out = []
    for phone, a, b in zip(phones, starts, ends):
        classes = PHONE_VISEMES.get(phone.lower().rstrip("012"), ("rest",))
        edges = np.linspace(a, b, len(classes) + 1)
        out += [(c, float(x), float(y)) for c, x, y in zip(classes, edges[:-1], edges[1:])]
    return out


def trajectories(phones, starts: np.ndarray, ends: np.ndarray, times: np.ndarray,
                 art: Articulation | None = None) -> np.ndarray:
    """Lip parameters :data:`PARAMS` at ``times`` (s): ``(len(times), 4)``, Cohen-Massaro blending."""
    art = art or Articulation()
    segs = segments(phones, starts, ends)
    rest = np.array(VISEMES["rest"][0]) + np.array([art.rest_open, 0, 0, 0])
    num = np.zeros((len(times), len(PARAMS)))
    den = np.full((len(times), 1), 1e-6)
    for viseme, a, b in segs:
        target, alpha, theta = VISEMES[viseme]
        target = rest + art.strength * (np.asarray(target) - rest) if viseme != "rest" else rest
        centre = 0.5 * (a + b) - art.lead
        half = 0.5 * (b - a)
        tau = times - centre
        th = theta / art.spread_time * np.where(tau < 0, art.anticipation, 1.0)
        # Flat top over the segment's own span, then exponential decay (c = 1) outside it.
        dominance = alpha * np.exp(-th * np.maximum(np.abs(tau) - half, 0.0))
        num += dominance[:, None] * target
        den += dominance[:, None]
    values = num / den
    values[:, 0] = np.maximum(values[:, 0], 0.0)
    values[:, 2:] = np.clip(values[:, 2:], 0.0, None)
    return values
