"""Allowed ranges of numeric options, one rule per option, shared by the command line and recipes.

A :class:`Range` is typer's ``parser`` for an option (``typer.Option(parser=FRAMES)``): the value
is checked when the command line is parsed, before any work, and a bad one is a one-line usage
error (exit 2) naming the option and the range. Floats must be finite: ``nan``, ``inf`` and
``1e309`` (which parses as ``inf``) are refused. Upper bounds keep sizes within memory.
Recipes check the same fields against the same ranges (:data:`RECIPE_FIELDS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """An interval ``[lo, hi]`` (ends excluded with ``lo_open``/``hi_open``) of integers or finite floats."""

    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        return f"{kind} in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"

    def problem(self, value: object) -> str | None:
        """Why ``value`` is outside the range (None when it is inside)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.integer and isinstance(value, float) and not value.is_integer()):
            return f"must be {self}, got {value!r:.40}"
        if not math.isfinite(value):
            return f"must be {self}, got non-finite {value}"
        if value < self.lo or value > self.hi or (self.lo_open and value == self.lo) or (
                self.hi_open and value == self.hi):
            return f"must be {self}, got {_num(value)}"
        return None

    def __call__(self, text: str | int | float) -> int | float:
        """typer's parser: the text as a number inside the range, else a one-line usage error."""
        value: object = text
        if isinstance(text, str):
            try:
                value = int(text) if self.integer else float(text)
            except ValueError:
                value = text
        if (why := self.problem(value)) is not None:
            if isinstance(text, str) and value is not text:  # show what was typed: 1e309, not inf
                why = why.rsplit(" got ", 1)[0] + f" got {text:.40}"
            from pydantic_core import PydanticCustomError  # lazily: the CLI's start-up reads these ranges

            raise PydanticCustomError("range", why)
        return int(value) if self.integer else float(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


@dataclass(frozen=True)
class IntList:
    """Comma-separated integers, each in ``item`` (e.g. bench's ``--batch 1,8``); parses to a tuple."""

    item: Range
    most: int = 64

    def __call__(self, text: str | tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(text, tuple):
            return text
        parts = [p.strip() for p in text.split(",")]
        if not all(parts) or len(parts) > self.most:
            from pydantic_core import PydanticCustomError

            raise PydanticCustomError("range", f"must be 1 to {self.most} comma-separated values, each {self.item}, "
                                               f"got {text!r:.40}")
        return tuple(int(self.item(p)) for p in parts)


MAX_FRAMES = 1500  # 60 s at 25 fps: a clip's tensors (and a TFLite graph's fixed T) stay within memory
MAX_CLIPS = 10_000  # synthetic clips are held in memory (tiny: ~0.35 MB per 50-frame clip)

FRAMES = Range(1, MAX_FRAMES, integer=True)
CLIPS = Range(1, MAX_CLIPS, integer=True)
TRAIN_CLIPS = Range(1, 10 * MAX_CLIPS, integer=True)  # recipes/full.yaml trains on 20,000
CLIPS_OR_NONE = Range(0, MAX_CLIPS, integer=True)  # 0: skip that check
EPOCHS = Range(1, 10_000, integer=True)
EPOCHS_OR_NONE = Range(0, 10_000, integer=True)  # 0: no fine-tuning
STEPS = Range(1, 100, integer=True)
BATCH = Range(1, 4096, integer=True)
GRAD_ACCUM = Range(1, 1024, integer=True)
SEED = Range(0, 2**32 - 1, integer=True)  # numpy's seed range
LR = Range(0, 10, lo_open=True)
LR_SCALE = Range(0, 100)
LOSS_WEIGHT = Range(0, 1000)
TEMPERATURE = Range(0, 100, lo_open=True)
FRACTION = Range(0, 1, lo_open=True)  # e.g. a MAC target of 0.5
PRUNE_RATIO = Range(0, 0.99)
PROBABILITY = Range(0, 1, lo_open=True, hi_open=True)
POINTS = Range(0, 100)  # accuracy points
MINUTES = Range(0, 100_000, lo_open=True)
SECONDS = Range(0, 86_400, lo_open=True)
MILLISECONDS = Range(1, 60_000)
THREADS = Range(1, 1024, integer=True)
WARMUP = Range(0, 1000, integer=True)
REPEATS = Range(1, 100_000, integer=True)
CHUNK = Range(1, 10_000, integer=True)  # frames per inference chunk: the chunk bounds model memory
WINDOW = Range(1, 10_000, integer=True)
OFFSET_FRAMES = Range(0, 100, integer=True)
BATCH_LIST = IntList(BATCH)
FRAMES_LIST = IntList(FRAMES)
SHIFTS = IntList(Range(-15, 15, integer=True))  # audio shifts in frames: the models score offsets -15..15

# Recipe fields ("stage.field" first, then "field" in any stage) checked against the same ranges as the command-line options they mirror.
RECIPE_FIELDS: dict[str, Range] = {
    "seed": SEED, "lr": LR, "train.epochs": EPOCHS, "distill.epochs": EPOCHS, "epochs": EPOCHS_OR_NONE,
    "teacher_epochs": EPOCHS, "batch_size": BATCH, "grad_accum": GRAD_ACCUM, "train_clips": TRAIN_CLIPS, "val_clips": CLIPS,
    "calibration_clips": CLIPS, "eval_clips": CLIPS, "clips": CLIPS_OR_NONE, "frames": FRAMES,
    "time_budget_min": MINUTES, "backbone_lr_scale": LR_SCALE, "distill.temperature": TEMPERATURE,
    "distill.kd": LOSS_WEIGHT, "distill.embed": LOSS_WEIGHT, "distill.corr": LOSS_WEIGHT, "distill.hard": LOSS_WEIGHT,
    "prune.macs": FRACTION, "prune.ratio": PRUNE_RATIO, "prune.steps": STEPS, "final_epochs": EPOCHS_OR_NONE,
    "quantize.tolerance": POINTS, "qat_if_drop_over": POINTS, "qat_epochs": EPOCHS, "qat_clips": CLIPS,
    "qat_batch_size": BATCH, "qat_lr": LR, "threads": THREADS, "warmup": WARMUP, "repeats": REPEATS,
    "max_seconds": SECONDS, "batches": BATCH,
}
